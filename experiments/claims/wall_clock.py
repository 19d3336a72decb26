"""Accuracy at matched wall-clock: warm seconds per problem from a timing run on a quiet machine (records whose batch
compiled nothing), accuracy from a full run of the same methods and settings (e.g. a cost-curve cell), joined per
method; then, for each ∇-Reasoner method, the most accurate baseline that costs no more time, with the paired
difference on the full run's problems and seeds.

    python -m experiments.claims.wall_clock TIMING_DIR ACCURACY_DIR [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics

from nabla_jax.evaluation.paired import compare
from nabla_jax.evaluation.records import load_directory

BASELINES = ("greedy", "sc", "bon", "wbon")


def warm_seconds(records: list[dict]) -> dict[str, float]:
    """Median warm wall-clock seconds per problem, per method (batches that compiled are left out)."""
    times = collections.defaultdict(list)
    for r in records:
        if not r.get("compiled") and r.get("error") is None:
            times[r["method"]].append(r["wall_time_s"])
    return {method: statistics.median(values) for method, values in times.items()}


def accuracy(records: list[dict]) -> dict[str, tuple[float, int]]:
    by_method = collections.defaultdict(list)
    for r in records:
        by_method[r["method"]].append(bool(r["correct"]))
    return {method: (sum(v) / len(v), len(v)) for method, v in by_method.items()}


def table(seconds: dict[str, float], accurate: dict[str, tuple[float, int]]) -> list[str]:
    lines = ["| method | warm s/problem | accuracy (records) |", "|---|---|---|"]
    for method in sorted(seconds, key=seconds.get):
        if method in accurate:
            acc, count = accurate[method]
            lines.append(f"| {method} | {seconds[method]:.4f} | {100 * acc:.1f}% ({count}) |")
    return lines


def matched(seconds: dict[str, float], accurate: dict[str, tuple[float, int]], records: list[dict]) -> list[str]:
    """Each ∇-Reasoner method against the most accurate baseline whose warm time is at most its own."""
    lines = []
    for method in sorted(m for m in seconds if m.startswith("nabla@") and m in accurate):
        cheaper = [m for m in seconds if m.split("@")[0] in BASELINES and m in accurate and seconds[m] <= seconds[method]]
        if not cheaper:
            lines.append(f"- {method} ({seconds[method]:.4f} s): no baseline is as cheap")
            continue
        best = max(cheaper, key=lambda m: accurate[m][0])
        c = compare(records, method, best)
        lo, hi = c["difference_ci"]
        lines.append(f"- {method} ({seconds[method]:.4f} s/problem, {100 * c['accuracy_a']:.1f}%) against {best} "
                     f"({seconds[best]:.4f} s, {100 * c['accuracy_b']:.1f}%): {100 * c['difference']:+.1f} "
                     f"[{100 * lo:+.1f}, {100 * hi:+.1f}] points over {c['pairs']} pairs, McNemar p {c['mcnemar_p']:.3g}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timing_dir")
    parser.add_argument("accuracy_dir")
    parser.add_argument("--out", default=None, help="also write results.md here")
    args = parser.parse_args()
    timing, full = load_directory(args.timing_dir)[1], load_directory(args.accuracy_dir)[1]
    seconds, accurate = warm_seconds(timing), accuracy(full)
    text = "\n".join(table(seconds, accurate) + [""] + matched(seconds, accurate, full)) + "\n"
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as handle:
            handle.write(f"Timing: {args.timing_dir}\nAccuracy: {args.accuracy_dir}\n\n{text}")


if __name__ == "__main__":
    main()
