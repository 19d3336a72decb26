"""Paired comparison of one method across two eval directories (two cells of a sweep, e.g. with and without a
component): the same problems and seeds, a paired bootstrap interval and McNemar's exact test, as
``nabla-jax report --paired`` does within one directory.

    python -m experiments.claims.paired_cells nabla@8 DIR_A DIR_B
"""

from __future__ import annotations

import sys

from nabla_jax.evaluation.paired import compare
from nabla_jax.evaluation.records import load_directory


def paired_cells(method: str, dir_a: str, dir_b: str) -> dict:
    records = []
    for tag, directory in (("A", dir_a), ("B", dir_b)):
        records += [{**r, "method": tag} for r in load_directory(directory)[1] if r["method"] == method]
    return compare(records, "A", "B")


if __name__ == "__main__":
    method, a, b = sys.argv[1:4]
    c = paired_cells(method, a, b)
    lo, hi = c["difference_ci"]
    print(f"{method}: A {100 * c['accuracy_a']:.1f}% B {100 * c['accuracy_b']:.1f}% over {c['pairs']} pairs; "
          f"A - B {100 * c['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], McNemar p {c['mcnemar_p']:.3g}")
