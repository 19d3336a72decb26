"""What every theory experiment shares: arguments, float64, the printed table, figure files."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import jax
import matplotlib

matplotlib.use("Agg")

from experiments.theory.report import all_passed, format_table  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=DEFAULT_OUT, help="directory for the figures and the table (.txt)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args


@contextlib.contextmanager
def float64():
    with jax.enable_x64(True):
        yield


def finish(name: str, rows, out: str, started: float) -> None:
    """Print the table, save it next to the figures, exit non-zero if any row failed."""
    table = format_table(rows)
    verdict = "all checks pass" if all_passed(rows) else "SOME CHECKS FAIL"
    footer = f"{name}: {verdict} ({time.time() - started:.0f} s)"
    print(table)
    print(footer)
    with open(os.path.join(out, f"{name.lower()}_table.txt"), "w") as f:
        f.write(table + "\n" + footer + "\n")
    sys.exit(0 if all_passed(rows) else 1)


def save(figure, out: str, filename: str) -> None:
    path = os.path.join(out, filename)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")
