"""The tuning split's tables, and the settings the study freezes from them.

Per setting group, every cell's ``nabla@8`` against the base's, paired on the same problems and seeds; wBoN's
temperature from the base's pool of 32 (weights recomputed from the recorded rewards); and the choices, each a
function of the cells' records (:func:`load_cells`, read once):

- :func:`chosen_changes`: each setting group's best cell, where it beats the base, joined (the ``combined`` cell);
- :func:`tuned_changes`: the cell with the highest ``nabla@8`` accuracy among the base, the setting cells and the
  combined cell (what the study runs as ``nabla_tuned``);
- :func:`wbon_temperature`: the temperature with the highest mean wBoN accuracy over N = 4, 8, 16, 32.
"""

from __future__ import annotations

import math
import os

import numpy as np

WBON_TEMPERATURES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
WBON_NS = (4, 8, 16, 32)


def load_cells(records_dir: str) -> dict[str, list[dict]]:
    """Every tuning cell's records under ``records_dir``, by cell name (cells not run yet left out)."""
    from experiments.study.tuning import CELLS
    from nabla_jax.evaluation.records import load_directory

    return {name: list(load_directory(os.path.join(records_dir, name))[1]) for name in CELLS
            if os.path.isdir(os.path.join(records_dir, name))}


def _nabla(records: list[dict]) -> list[dict]:
    return [r for r in records if r["method"] == "nabla@8"]


def _accuracy(records: list[dict]) -> float:
    return float(np.mean([bool(r["correct"]) for r in _nabla(records)]))


def chosen_changes(cells: dict[str, list[dict]]) -> dict:
    """Each setting group's most accurate cell that beats the base, its changes joined."""
    from experiments.study.tuning import CELLS, SETTING_GROUPS

    base = _accuracy(cells["base"])
    changes = {}
    for group in SETTING_GROUPS:
        scored = [(_accuracy(cells[n]), n) for n, c in CELLS.items() if c[0] == group and n in cells]
        if scored and max(scored)[0] > base:
            changes.update(CELLS[max(scored)[1]][1])
    return changes


def tuned_changes(cells: dict[str, list[dict]]) -> dict:
    """The changes of the most accurate among the base, the setting cells and the combined cell."""
    from experiments.study.tuning import CELLS, SETTING_GROUPS, cell_changes

    eligible = [n for n, c in CELLS.items() if n in cells and c[0] in ("base", "combined", *SETTING_GROUPS)]
    best = max(eligible, key=lambda n: (_accuracy(cells[n]), n == "base"))
    return cell_changes(best, cells)


def wbon_accuracy(records: list[dict], temperature: float, n: int) -> float:
    return float(np.mean(wbon_hits(records, temperature, n)))


def wbon_hits(records: list[dict], temperature: float, n: int) -> list[bool]:
    """wBoN@n re-chosen from each recorded pool: votes weighted by softmax(reward / T) over the first n candidates;
    whether the chosen answer is correct."""
    from nabla_jax.evaluation.grading import GRADERS
    from nabla_jax.evaluation.methods import vote

    equivalent = GRADERS["testbed"].equivalent
    hits = []
    for r in records:
        pool = r["candidates"][:n]
        finite = [c["reward"] is not None and math.isfinite(c["reward"]) for c in pool]
        top = max(c["reward"] for c, ok in zip(pool, finite) if ok)
        weights = [math.exp((c["reward"] - top) / temperature) if ok else 0.0 for c, ok in zip(pool, finite)]
        chosen = vote([c["answer"] if ok else None for c, ok in zip(pool, finite)], weights, equivalent)
        hits.append(chosen is not None and bool(pool[chosen]["correct"]))
    return hits


def _pool(cells: dict[str, list[dict]]) -> list[dict]:
    return [r for r in cells["base"] if r["method"] == "bon@32"]


def wbon_temperature(cells: dict[str, list[dict]]) -> float:
    pool = _pool(cells)
    return max(WBON_TEMPERATURES, key=lambda t: (np.mean([wbon_accuracy(pool, t, n) for n in WBON_NS]), -t))


def _row(name: str, changes: dict, records: list[dict], base: list[dict], method: str = "nabla@8") -> str:
    from nabla_jax.evaluation.metrics import summarize
    from nabla_jax.evaluation.paired import compare

    row = next(r for r in summarize(records) if r["method"] == method)
    lo, hi = row["ci95_problems"]
    rejection = row.get("rejection_rate")
    if (base is records and method == "nabla@8") or not any(r["method"] == "nabla@8" for r in base):
        versus = "– | –"
    else:
        c = compare([*[{**r, "method": "A"} for r in records if r["method"] == method],
                     *[{**r, "method": "B"} for r in base if r["method"] == "nabla@8"]], "A", "B")
        ci = c["difference_ci"]
        versus = f"{100 * c['difference']:+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] | {c['mcnemar_p']:.3g}"
    what = ", ".join(f"{k} = {v}" for k, v in changes.items()) or "the base"
    return (f"| {name} | {method} | {what} | {100 * row['accuracy']:.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] | "
            f"{row['official_calls']:.1f} | {row['flops']:.3g} | "
            f"{'–' if rejection is None else f'{100 * rejection:.1f}'} | {versus} |")


def _within_cells(cells: dict) -> list[str]:
    """DTO against blind resampling inside each cell that ran both (the same reward, problems and seeds)."""
    from nabla_jax.evaluation.paired import compare
    from nabla_jax.evaluation.paired import markdown as paired_markdown

    pairs = [{**compare(records, "nabla@8", "nabla_no_dto@8"), "run": name} for name, records in cells.items()
             if {"nabla@8", "nabla_no_dto@8"} <= {r["method"] for r in records}]
    return ["## DTO against blind resampling, per reward", paired_markdown(pairs)] if pairs else []


def _work(records: list[dict]) -> list[str]:
    """Where the base's ∇-Reasoner spends its work: the DTO steps served by the cached gradient, the positions
    committed without DTO (token selection), the proposals rejected."""
    stats = [r["stats"] for r in _nabla(records)]
    total = {k: sum(s[k] for s in stats) for k in ("dto_full_steps", "dto_cached_steps", "skipped_tokens",
                                                   "dto_runs", "rejections", "proposals")}
    steps = total["dto_full_steps"] + total["dto_cached_steps"]
    positions = total["skipped_tokens"] + total["dto_runs"]
    return ["## Where the base's work goes", "",
            "| DTO steps from the cached gradient | positions committed without DTO | proposals rejected |",
            "|---|---|---|",
            f"| {100 * total['dto_cached_steps'] / steps:.1f}% ({total['dto_cached_steps']:,} of {steps:,}) | "
            f"{100 * total['skipped_tokens'] / positions:.1f}% ({total['skipped_tokens']:,} of {positions:,}) | "
            f"{100 * total['rejections'] / total['proposals']:.1f}% ({total['rejections']:,} of "
            f"{total['proposals']:,}) |", ""]


def report(records_dir: str) -> str:
    """``tuning.md``: the tables, and the choices the study freezes."""
    from experiments.study.tuning import BASE_LR, CELLS, PROBLEMS, SEEDS, cell_changes

    cells = load_cells(records_dir)
    if "base" not in cells:
        return ""
    base = cells["base"]
    header = ["| cell | method | change from the base | accuracy % | 95% CI (problems) | calls (official) | FLOPs | "
              "rejected % | against the base's nabla@8 (points, 95% CI) | McNemar p |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    parts = ["# The tuning split", "",
             f"Testbed test problems {PROBLEMS}, seeds {', '.join(map(str, SEEDS))}, the likelihood verifier; "
             "generated by `python -m experiments.study.make_report` from `experiments/study/tuning_records/` (runs: "
             "`python -m experiments.study.tuning`). The base is the demo's ∇-Reasoner (the official settings, the "
             f"gradient-norm test off) at learning rate {BASE_LR}; each cell changes what its row says. Paired "
             "differences are on the same problems and seeds (95% paired bootstrap over problems, McNemar's exact "
             "test).", ""]
    groups = dict.fromkeys(c[0] for c in CELLS.values())
    for group in groups:
        names = [n for n, c in CELLS.items() if c[0] == group and n in cells]
        if not names:
            continue
        parts += [f"## {group}", "", *header]
        for name in names:
            methods = [m for m in ("nabla@8", "nabla_no_dto@8", "bon@8") if any(r["method"] == m for r in cells[name])]
            for method in methods:
                parts.append(_row(name, cell_changes(name, cells), cells[name], base, method))
        parts.append("")
    parts += _within_cells(cells) + _work(cells["base"])
    pool = _pool(cells)
    parts += ["## wBoN's temperature", "",
              "From the base's pool of 32 (the same candidates and rewards as bon@N), weights softmax(reward / T):", "",
              "| T | " + " | ".join(f"wbon@{n} %" for n in WBON_NS) + " | mean |",
              "|---|" + "---|" * (len(WBON_NS) + 1)]
    for t in WBON_TEMPERATURES:
        accuracies = [wbon_accuracy(pool, t, n) for n in WBON_NS]
        parts.append(f"| {t} | " + " | ".join(f"{100 * a:.1f}" for a in accuracies) +
                     f" | {100 * np.mean(accuracies):.1f} |")
    tuned = tuned_changes(cells) if "combined" in cells else None
    parts += ["", "## Chosen for the report split", "",
              f"- each group's winner, joined (the combined cell): `{chosen_changes(cells)}`",
              f"- the tuned ∇-Reasoner (the most accurate of the base, the setting cells and the combined cell; its "
              f"changes from the base): "
              f"`{tuned if tuned is not None else 'the combined cell has not run'}`",
              f"- wBoN's temperature: {wbon_temperature(cells)}", ""]
    return "\n".join(parts)
