"""What the study's two drivers (``run.py``, ``tuning.py``) share: the command line, one process per run, and
keeping a finished run's records.

One process per run: a single process accumulates every run's compiled programs, and after a dozen ∇-Reasoner
configurations XLA's compiler could no longer map memory (seen on the tuning split)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

from experiments.testbed.reward_kinds import store


def keep(directory: str, target: str) -> None:
    """A finished ``nabla-jax eval`` directory's records (gzipped, texts dropped) and fingerprint into ``target``,
    which ``nabla-jax report`` reads directly."""
    os.makedirs(target, exist_ok=True)
    store(directory, os.path.join(target, "records.jsonl.gz"))
    shutil.copyfile(os.path.join(directory, "fingerprint.json"), os.path.join(target, "fingerprint.json"))
    print(f"{os.path.basename(target)}: stored in {target}", flush=True)


def main(argv, description: str, module: str, flag: str, known: Sequence[str], default_out: str,
         run: Callable[[str, list[str]], None]) -> None:
    """``--out`` and ``flag`` (comma-separated names of ``known``); one name runs here, several run one process
    each (``python -m module --out OUT flag NAME``), stopping at the first that fails."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=default_out)
    parser.add_argument(flag, default=",".join(known), help=f"comma-separated, of {', '.join(known)}")
    args = parser.parse_args(argv)
    names = [n for n in getattr(args, flag.lstrip("-")).split(",") if n]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown {flag.lstrip('-')} {unknown}; known: {', '.join(known)}")
    if len(names) == 1:
        run(args.out, names)
        return
    for name in names:
        code = subprocess.run([sys.executable, "-m", module, "--out", args.out, flag, name]).returncode
        if code:
            raise SystemExit(f"{module} {flag} {name} failed (exit {code}); rerun to resume")
