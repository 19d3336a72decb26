"""Matched-cost comparisons: each method against the best-of-N curve of the same run, at its own cost.

A method of cost c (a per-problem mean of FLOPs, official calls or warm wall time) is paired with the cheapest
``bon@k`` that costs at least c ("above": best-of-N given as much compute or more) and with the dearest one that costs
less ("below"), each a paired comparison on the same problems and seeds (:func:`nabla_jax.evaluation.paired.compare`).
A method beats sampling at matched cost when it beats the "above" match significantly.
"""

from __future__ import annotations

from nabla_jax.evaluation.metrics import summarize
from nabla_jax.evaluation.paired import compare

MEASURES = {"flops": "flops", "calls": "official_calls", "wall": "wall_time_s"}
CURVE = "bon"


def bracket(cost: float, curve: list[tuple[float, str]]) -> tuple[str | None, str | None]:
    """``(cheapest method costing >= cost, dearest costing < cost)`` on ``curve`` [(cost, method)]."""
    above = [(c, m) for c, m in curve if c >= cost]
    below = [(c, m) for c, m in curve if c < cost]
    return (min(above)[1] if above else None), (max(below)[1] if below else None)


def matched_comparisons(records: list[dict], measure: str, run: str = "") -> list[dict]:
    """Every method not on the best-of-N curve, paired with the curve's two neighbours at its ``measure``."""
    if measure not in MEASURES:
        raise ValueError(f"--matched takes {', '.join(MEASURES)}, got {measure!r}")
    field = MEASURES[measure]
    rows = summarize(records)
    curve = [(r[field], r["method"]) for r in rows if r["method_name"] == CURVE]
    if not curve:
        raise ValueError(f"matched {measure}: the run {run or ''} has no {CURVE}@N records to match against")
    cost = {r["method"]: r[field] for r in rows}
    out = []
    for r in rows:
        if r["method_name"] == CURVE:
            continue
        for side, match in zip(("above", "below"), bracket(r[field], curve)):
            if match is not None:
                out.append({"run": run, "measure": measure, "method": r["method"], "cost": r[field], "side": side,
                            "match": match, "match_cost": cost[match], **compare(records, r["method"], match)})
    return out


def markdown(comparisons: list[dict]) -> str:
    if not comparisons:
        return ""
    lines = []
    for measure in dict.fromkeys(c["measure"] for c in comparisons):
        lines += ["", f"Matched {measure} (each method against the cheapest {CURVE}@k costing at least as much, and "
                  "the dearest costing less; same problems and seeds, difference in points with a 95% paired "
                  "bootstrap interval, McNemar's exact test):", "",
                  "| run | method | cost | matched | its cost | method % | matched % | difference | 95% CI | McNemar p |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c in (c for c in comparisons if c["measure"] == measure):
            ci = c["difference_ci"]
            interval = "–" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
            lines.append(f"| {c['run']} | {c['method']} | {c['cost']:.3g} | {c['match']} ({c['side']}) | "
                         f"{c['match_cost']:.3g} | {100 * c['accuracy_a']:.1f} | {100 * c['accuracy_b']:.1f} | "
                         f"{100 * c['difference']:+.1f} | {interval} | {c['mcnemar_p']:.3g} |")
    return "\n".join(lines) + "\n"
