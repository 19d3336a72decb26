"""Summaries of records, per method key.

* ``accuracy``: the mean over seeds of each seed's accuracy; ``ci95_seeds``: a Student-t interval over the per-seed
  accuracies (>= 2 seeds); ``ci95_problems``: a percentile bootstrap over problems (fixed RNG).
* ``pass@k``: the unbiased estimator 1 - C(n-c, k) / C(n, k) per record, averaged.
* ``maj@k``: accuracy of the majority vote over each record's first k candidates, averaged.
* costs: means per record of model calls, FLOPs, tokens, reward calls and rollouts; wall time leaves out records
  whose batch compiled, unless all did.
* ``rejection_rate``: pooled rejections / proposals.

Each definition in full: docs/design-notes.md.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from nabla_jax.evaluation.methods import vote

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
COSTS = ("official_calls", "full_calls", "flops", "generated_tokens", "reward_calls", "rollouts")


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t quantile (a table to df 30, then the Cornish-Fisher expansion)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def t_interval(values) -> tuple[float, float] | None:
    values = np.asarray(values, float)
    if values.size < 2:
        return None
    half = t_quantile_975(values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def bootstrap_interval(per_problem, resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    values = np.asarray(per_problem, float)
    if values.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k draws without replacement from n candidates, c of them correct, is correct)."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def _powers(n: int) -> list[int]:
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def summarize_method(records: list[dict], equivalent=None) -> dict:
    """Summary of one method key's records (see the module docstring). ``equivalent(a, b)`` enables maj@k."""
    by_seed: dict[int, list[bool]] = defaultdict(list)
    by_problem: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        by_seed[r["seed"]].append(bool(r["correct"]))
        by_problem[r["problem_id"]].append(bool(r["correct"]))
    seed_acc = {s: float(np.mean(v)) for s, v in sorted(by_seed.items())}
    first = records[0]
    out = {
        "method": first["method"],
        "method_name": first.get("method_name", first["method"]),
        "n": first.get("n"),
        "seeds": sorted(seed_acc),
        "problems": len(by_problem),
        "records": len(records),
        "errors": sum(1 for r in records if r.get("error")),  # records whose answer met NaN/inf
        "accuracy": float(np.mean(list(seed_acc.values()))),
        "accuracy_per_seed": {str(s): a for s, a in seed_acc.items()},
        "ci95_seeds": t_interval(list(seed_acc.values())),
        "ci95_problems": bootstrap_interval([np.mean(v) for v in by_problem.values()]),
    }
    n_cands = min(len(r.get("candidates") or []) for r in records)
    if n_cands >= 1 and all("correct" in c for r in records for c in r["candidates"]):
        out["pass@k"] = {
            str(k): float(np.mean([pass_at_k(len(r["candidates"]), sum(c["correct"] for c in r["candidates"]), k)
                                   for r in records]))
            for k in _powers(n_cands)
        }
        if equivalent is not None and n_cands >= 2:
            out["maj@k"] = {str(k): _maj_at_k(records, k, equivalent) for k in _powers(n_cands)}
    for name in COSTS:
        out[name] = float(np.mean([r.get(name, 0) or 0 for r in records]))
    warm = [r["wall_time_s"] for r in records if not r.get("compiled")]
    out["wall_time_s"] = float(np.mean(warm if warm else [r["wall_time_s"] for r in records]))
    out["wall_time_includes_compile"] = not warm
    stats = [r.get("stats") or {} for r in records]
    if any("rejections" in s for s in stats):
        rejections = sum(s.get("rejections", 0) for s in stats)
        proposals = sum(s.get("proposals", max(r.get("rollouts", 1) - 1, 0)) for s, r in zip(stats, records))
        out["rejection_rate"] = rejections / proposals if proposals else None
    return out


def _maj_at_k(records, k, equivalent) -> float:
    hits = []
    for r in records:
        cands = r["candidates"][:k]
        chosen = vote([c["answer"] for c in cands], [1.0] * len(cands), equivalent)
        hits.append(bool(cands[chosen]["correct"]) if chosen is not None else False)
    return float(np.mean(hits))


def summarize(records: list[dict], equivalent=None) -> list[dict]:
    """One summary per method key, ordered by method name then budget."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["method"]].append(r)
    rows = [summarize_method(g, equivalent) for g in groups.values()]
    return sorted(rows, key=lambda s: (s["method_name"], s["n"] or 0))


def matched_budget(rows: list[dict], budget: float, measure: str = "official_calls") -> dict[str, dict]:
    """Per method name, the summary row with the largest mean ``measure`` not above ``budget``."""
    best: dict[str, dict] = {}
    for row in rows:
        name = row["method_name"]
        if row[measure] <= budget and (name not in best or row[measure] > best[name][measure]):
            best[name] = row
    return best
