"""Each run of a driver in a process of its own: one process accumulates every run's compiled programs, and after
a dozen ∇-Reasoner configurations XLA's compiler could no longer map memory (seen on the tuning split)."""

from __future__ import annotations

import subprocess
import sys


def one_process_each(module: str, flag: str, names: list[str], out: str) -> None:
    """``python -m module --out out flag NAME`` for each name in turn; stops at the first that fails."""
    for name in names:
        code = subprocess.run([sys.executable, "-m", module, "--out", out, flag, name]).returncode
        if code:
            raise SystemExit(f"{module} {flag} {name} failed (exit {code}); rerun to resume")
