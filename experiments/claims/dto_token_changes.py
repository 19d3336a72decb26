"""How often DTO changes the resampled first ahead token: proposals / DTO runs (a proposal is a resampled token that
differs from the rollout's), per cell of a sweep's output directory; and rollout reuse (the paper's "rollout reuse
bypasses 74.1%"): how often the rollout already in hand serves the next position instead of a new one.

    python -m experiments.claims.dto_token_changes runs/claims/dto_learning_rate

Rollout reuse, from each ∇-Reasoner record's ``stats`` (nabla_jax/reasoner/loop.py): every position the decoder
reaches is committed by the selection test without optimisation (``skipped_tokens``), committed unoptimised when
the rollout budget is spent (``budget_tokens``), or resampled: one committed token each, so the resampled positions
are the response's tokens minus those two (checked: they equal ``dto_runs`` in every ∇-Reasoner record; blind
resampling resamples without DTO and counts no ``dto_runs``). Only a resampled token that differs from the
rollout's (``proposals``) starts a new rollout; a proposal the reward rejects (``rejections``) leaves the old
rollout in place.

- unchanged: 1 − proposals / resampled, the resampled positions that needed no new rollout;
- kept serving: 1 − (proposals − rejections) / resampled, the resampled positions after which the old rollout
  still serves (unchanged, or changed and rejected): the paper's definition ("a kept or rejected rollout serves as
  the rollout for the next position");
- of all positions: 1 − proposals / tokens, the positions reached that started no rollout.
"""

from __future__ import annotations

import json
import os
import sys

FIELDS = ("proposals", "rejections", "dto_runs", "skipped_tokens", "budget_tokens", "tokens", "resampled")


def totals(directory: str) -> dict[str, dict[str, int]]:
    """method -> the stats in FIELDS summed over the ∇-Reasoner records of one eval directory."""
    out: dict[str, dict[str, int]] = {}
    with open(os.path.join(directory, "records.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            stats = record.get("stats") or {}
            if "dto_runs" in stats:
                t = out.setdefault(record["method"], dict.fromkeys(FIELDS, 0))
                tokens = record["candidates"][record.get("chosen") or 0]["tokens"]
                stats = {**stats, "tokens": tokens, "resampled": tokens - stats["skipped_tokens"] - stats["budget_tokens"]}
                for field in FIELDS:
                    t[field] += stats.get(field, 0)
    return out


def changes(directory: str) -> dict[str, tuple[int, int]]:
    """method -> (proposals, DTO runs) summed over the records of one eval directory."""
    return {m: (t["proposals"], t["dto_runs"]) for m, t in totals(directory).items()}


def reuse(t: dict[str, int]) -> dict[str, float | None]:
    """The rollout-reuse shares (module docstring) of one method's summed stats."""
    runs, proposals, rejections = t["resampled"], t["proposals"], t["rejections"]
    return {
        "unchanged": 1 - proposals / runs if runs else None,
        "kept_serving": 1 - (proposals - rejections) / runs if runs else None,
        "of_all_positions": 1 - proposals / t["tokens"] if t["tokens"] else None,
    }


def _cells(root: str) -> list[str]:
    if os.path.isfile(os.path.join(root, "records.jsonl")):
        return [root]
    return [os.path.join(root, c) for c in sorted(os.listdir(root)) if os.path.isfile(os.path.join(root, c, "records.jsonl"))]


def main(root: str) -> None:
    cells = [(c, totals(c)) for c in _cells(root)]
    print("| cell | method | proposals | DTO runs | changed % |\n|---|---|---|---|---|")
    for cell, methods in cells:
        for method, t in sorted(methods.items()):
            if t["dto_runs"]:
                print(f"| {os.path.basename(cell)} | {method} | {t['proposals']} | {t['dto_runs']} | "
                      f"{100 * t['proposals'] / t['dto_runs']:.1f} |")
    print("\nrollout reuse\n\n| cell | method | positions | resampled | proposals | rejections | unchanged % | "
          "kept serving % | of all positions % |\n|---|---|---|---|---|---|---|---|---|")
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for cell, methods in cells:
        for method, t in sorted(methods.items()):
            r = reuse(t)
            print(f"| {os.path.basename(cell)} | {method} | {t['tokens']} | {t['resampled']} | {t['proposals']} | "
                  f"{t['rejections']} | {pct(r['unchanged'])} | {pct(r['kept_serving'])} | {pct(r['of_all_positions'])} |")


if __name__ == "__main__":
    for path in sys.argv[1:]:
        main(path)
