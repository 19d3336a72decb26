"""How often DTO changes the resampled first ahead token: proposals / DTO runs (a proposal is a resampled token that
differs from the rollout's), per cell of a sweep's output directory.

    python experiments/claims/dto_token_changes.py runs/claims/dto_learning_rate
"""

from __future__ import annotations

import json
import os
import sys


def changes(directory: str) -> dict[str, tuple[int, int]]:
    """method -> (proposals, DTO runs) summed over the records of one eval directory."""
    totals: dict[str, list[int]] = {}
    with open(os.path.join(directory, "records.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            stats = record.get("stats") or {}
            if "dto_runs" in stats:
                t = totals.setdefault(record["method"], [0, 0])
                t[0] += stats["proposals"]
                t[1] += stats["dto_runs"]
    return {m: (p, r) for m, (p, r) in totals.items()}


def main(root: str) -> None:
    print("| cell | method | proposals | DTO runs | changed % |\n|---|---|---|---|---|")
    for cell in sorted(os.listdir(root)):
        if not os.path.isfile(os.path.join(root, cell, "records.jsonl")):
            continue
        for method, (proposals, runs) in sorted(changes(os.path.join(root, cell)).items()):
            if runs:
                print(f"| {cell} | {method} | {proposals} | {runs} | {100 * proposals / runs:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
