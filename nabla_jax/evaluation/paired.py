"""Paired comparison of two methods on the same problems and seeds: is a difference of a few points real?

Both methods' records are matched on (problem, seed). The accuracy difference gets a 95% bootstrap interval over
problems (each problem's difference averaged over its seeds first, so seeds of one problem are resampled together),
and McNemar's exact test on the discordant (problem, seed) pairs: under "no difference", the pairs that only A
solves and those that only B solves are equally likely, so their split is Binomial(b + c, 1/2).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.stats import binomtest

from nabla_jax.evaluation.metrics import bootstrap_interval


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    total = only_a + only_b
    if total == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), total, 0.5).pvalue)


def paired_outcomes(records: list[dict], method_a: str, method_b: str) -> dict[tuple, tuple[bool, bool]]:
    """``{(problem_id, seed): (A correct, B correct)}`` over the pairs both methods have a record for."""
    by_method: dict[str, dict] = defaultdict(dict)
    for r in records:
        by_method[r["method"]][r["problem_id"], r["seed"]] = bool(r["correct"])
    for name in (method_a, method_b):
        if name not in by_method:
            raise ValueError(f"no records of method {name!r}; have: {', '.join(sorted(by_method))}")
    a, b = by_method[method_a], by_method[method_b]
    return {key: (a[key], b[key]) for key in sorted(a.keys() & b.keys())}


def compare(records: list[dict], method_a: str, method_b: str, resamples: int = 10000, seed: int = 0) -> dict:
    """Accuracies, their difference A − B with a paired bootstrap interval, and McNemar's exact p-value."""
    pairs = paired_outcomes(records, method_a, method_b)
    if not pairs:
        raise ValueError(f"methods {method_a!r} and {method_b!r} share no (problem, seed) pair")
    per_problem: dict[str, list[float]] = defaultdict(list)
    for (problem, _), (x, y) in pairs.items():
        per_problem[problem].append(float(x) - float(y))
    outcomes = np.asarray(list(pairs.values()), bool)
    only_a = int(np.sum(outcomes[:, 0] & ~outcomes[:, 1]))
    only_b = int(np.sum(~outcomes[:, 0] & outcomes[:, 1]))
    return {
        "a": method_a,
        "b": method_b,
        "pairs": len(pairs),
        "problems": len(per_problem),
        "accuracy_a": float(outcomes[:, 0].mean()),
        "accuracy_b": float(outcomes[:, 1].mean()),
        "difference": float(outcomes[:, 0].mean() - outcomes[:, 1].mean()),
        "difference_ci": bootstrap_interval([np.mean(v) for v in per_problem.values()], resamples, seed),
        "only_a": only_a,
        "only_b": only_b,
        "mcnemar_p": mcnemar_exact(only_a, only_b),
    }


def markdown(comparisons: list[dict]) -> str:
    if not comparisons:
        return ""
    lines = ["", "Paired comparisons (same problems and seeds; difference A − B with a 95% paired bootstrap interval "
             "over problems; McNemar's exact test on the discordant pairs):", "",
             "| run | A | B | pairs | A % | B % | A − B (points) | 95% CI | only A / only B | McNemar p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        ci = c["difference_ci"]
        interval = "–" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
        lines.append(f"| {c.get('run', '')} | {c['a']} | {c['b']} | {c['pairs']} | {100 * c['accuracy_a']:.1f} | {100 * c['accuracy_b']:.1f} "
                     f"| {100 * c['difference']:+.1f} | {interval} | {c['only_a']} / {c['only_b']} | {c['mcnemar_p']:.3g} |")
    return "\n".join(lines) + "\n"
