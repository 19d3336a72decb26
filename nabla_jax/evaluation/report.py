"""``summary.json``, ``results.md`` and accuracy-against-compute plots from one or several results directories."""

from __future__ import annotations

import json
import os

from nabla_jax.evaluation.grading import GRADERS
from nabla_jax.evaluation.metrics import matched_budget, summarize
from nabla_jax.evaluation.matched import markdown as matched_markdown
from nabla_jax.evaluation.matched import matched_comparisons
from nabla_jax.evaluation.paired import compare
from nabla_jax.evaluation.paired import markdown as paired_markdown
from nabla_jax.evaluation.records import load_directory, refuse_link

PLOTS = (("official_calls", "model calls per problem (official count)", "accuracy_vs_calls.png"),
         ("flops", "FLOPs per problem", "accuracy_vs_flops.png"))


def summarize_directory(directory: str, name: str | None = None) -> dict:
    fingerprint, records = load_directory(directory)
    grader = GRADERS.get(fingerprint["shared"]["benchmark"]["grader"])
    rows = summarize(records, grader.equivalent if grader else None) if records else []
    return {"directory": os.path.abspath(directory), "name": name or os.path.basename(os.path.normpath(directory)),
            "fingerprint": fingerprint, "methods": rows}


def unique_names(directories: list[str]) -> list[str]:
    """The shortest trailing path of each directory that tells it from the others (``a/run``, ``b/run``)."""
    parts = [os.path.abspath(d).strip(os.sep).split(os.sep) for d in directories]
    depth = 1
    while depth < max(map(len, parts)):
        names = [os.sep.join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            break
        depth += 1
    return [os.sep.join(p[-depth:]) for p in parts]


def setting(run: dict) -> dict:
    """What must agree for runs to share a table: the benchmark (name and file hash) and the decoding settings."""
    shared = run["fingerprint"].get("shared", {})
    return {"benchmark": shared.get("benchmark"), "decode": shared.get("decode")}


def setting_groups(runs: list[dict]) -> list[list[dict]]:
    groups: list[list[dict]] = []
    for run in runs:
        for group in groups:
            if setting(group[0]) == setting(run):
                group.append(run)
                break
        else:
            groups.append([run])
    return groups


def group_heading(group: list[dict], groups: list[list[dict]]) -> str:
    """The benchmark and the decoding settings that differ between the groups."""
    mine = setting(group[0])
    decodes = [setting(g[0])["decode"] or {} for g in groups]
    differing = sorted(k for k in set().union(*decodes) if len({json.dumps(d.get(k)) for d in decodes}) > 1)
    bench = mine["benchmark"] or {}
    text = f"benchmark {bench.get('name')} (sha256 {str(bench.get('sha256'))[:12]}…)"
    if differing:
        text += "; decoding " + ", ".join(f"{k}={(mine['decode'] or {}).get(k)!r}" for k in differing)
    return text


def errors_note(runs: list[dict]) -> str:
    flagged = [(run["name"], row["method"], row["errors"]) for run in runs for row in run["methods"]
               if row.get("errors")]
    if not flagged:
        return ""
    listed = "; ".join(f"{run}: {method} ({count})" for run, method, count in flagged)
    return (f"\nWarning: records whose answer met NaN/inf values (their \"error\" field says where): {listed}. "
            "They count as scored; check the models' weights and dtype.\n")


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _interval(ci) -> str:
    return "–" if ci is None else f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _sci(x: float) -> str:
    return f"{x:.3g}"


def markdown_table(runs: list[dict], several: bool | None = None) -> str:
    several = len(runs) > 1 if several is None else several
    head = (["run"] if several else []) + [
        "method", "N", "seeds", "problems", "accuracy %", "±95% (seeds)", "95% CI (problems)", "pass@N %",
        "maj@N %", "calls (official)", "calls (full)", "FLOPs", "tokens", "wall s", "rejection %",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        for row in run["methods"]:
            ci = row["ci95_seeds"]
            half = "–" if ci is None else f"{100 * (ci[1] - ci[0]) / 2:.1f}"
            top = lambda table: _pct(table[max(table, key=int)]) if table else "–"  # noqa: E731
            cells = ([run["name"]] if several else []) + [
                row["method"], str(row["n"] or "–"), str(len(row["seeds"])), str(row["problems"]),
                _pct(row["accuracy"]), half, _interval(row["ci95_problems"]), top(row.get("pass@k")),
                top(row.get("maj@k")), f"{row['official_calls']:.1f}", f"{row['full_calls']:.1f}",
                _sci(row["flops"]), f"{row['generated_tokens']:.1f}",
                f"{row['wall_time_s']:.3g}" + ("*" if row["wall_time_includes_compile"] else ""),
                _pct(row.get("rejection_rate")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    notes = ("\nAccuracy: mean over seeds; ±95% (seeds): Student-t half-width over per-seed accuracies; "
             "CI (problems): bootstrap over problems. Costs are means per problem and seed. "
             "* wall time includes compilation.\n")
    return "\n".join(lines) + "\n" + notes


def matched_section(runs: list[dict], budgets: list[tuple[str, float]]) -> tuple[str, dict]:
    text, data = [], {}
    for measure, budget in budgets:
        text.append(f"\n### Matched budget: {measure} <= {budget:g}\n")
        text.append("| run | method | N | accuracy % | " + measure + " |\n|---|---|---|---|---|")
        for run in runs:
            best = matched_budget(run["methods"], budget, measure)
            data.setdefault(f"{measure}<={budget:g}", {})[run["name"]] = {k: v["method"] for k, v in best.items()}
            for name, row in sorted(best.items()):
                text.append(f"| {run['name']} | {name} | {row['n'] or '–'} | {_pct(row['accuracy'])} | "
                            f"{_sci(row[measure])} |")
    return "\n".join(text) + ("\n" if text else ""), data


def plot(runs: list[dict], measure: str, label: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for run in runs:
        families: dict[str, list[dict]] = {}
        for row in run["methods"]:
            families.setdefault(row["method_name"], []).append(row)
        for name, rows in sorted(families.items()):
            rows = sorted(rows, key=lambda r: r[measure])
            x = [max(r[measure], 1e-9) for r in rows]
            y = [100 * r["accuracy"] for r in rows]
            err = [[100 * (r["accuracy"] - (r["ci95_seeds"] or (r["accuracy"],) * 2)[0]) for r in rows],
                   [100 * ((r["ci95_seeds"] or (r["accuracy"],) * 2)[1] - r["accuracy"]) for r in rows]]
            tag = name if len(runs) == 1 else f"{run['name']}: {name}"
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=tag)
            for r, xi, yi in zip(rows, x, y):
                if r["n"]:
                    ax.annotate(str(r["n"]), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy % (mean over seeds, 95% t-interval)")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def paired_section(directories: list[str], pairs) -> tuple[str, list[dict]]:
    """Paired comparisons ``(A, B)`` of methods (by record name, e.g. ``nabla@8``), in every directory that holds
    both."""
    comparisons, run_names = [], dict(zip(directories, unique_names(directories)))
    for a, b in pairs:
        found = False
        for directory in directories:
            _, records = load_directory(directory)
            names = {r["method"] for r in records}
            if a in names and b in names:
                run = run_names[directory]
                comparisons.append({"run": run, "directory": os.path.abspath(directory), **compare(records, a, b)})
                found = True
        if not found:
            raise ValueError(f"no results directory holds both {a!r} and {b!r}")
    return paired_markdown(comparisons), comparisons


def matched_cost_section(directories: list[str], measures) -> tuple[str, list[dict]]:
    """Each directory's methods against its best-of-N curve at matched cost (:mod:`nabla_jax.evaluation.matched`)."""
    comparisons = []
    for measure in measures:
        for directory, name in zip(directories, unique_names(directories)):
            comparisons += matched_comparisons(load_directory(directory)[1], measure, name)
    return matched_markdown(comparisons), comparisons


def build_report(directories: list[str], out: str | None = None, budgets=(), pairs=(), at_cost=()) -> tuple[str, dict]:
    """Write ``summary.json``, ``results.md`` and the two PNGs into ``out`` (default: the first directory);
    returns the markdown and the summary. ``pairs`` of method names add paired comparisons; ``at_cost`` measures
    (``flops``, ``calls``, ``wall``) add each method's comparison with best-of-N at matched cost."""
    if not directories:
        raise ValueError("no results directory given")
    real = [os.path.realpath(d) for d in directories]
    twice = sorted({d for d, r in zip(directories, real) if real.count(r) > 1})
    if twice:
        raise ValueError(f"the same results directory given twice: {', '.join(twice)}")
    runs = [summarize_directory(d, name) for d, name in zip(directories, unique_names(directories))]
    out = out or directories[0]
    for name in ("summary.json", "results.md", *(plot[2] for plot in PLOTS)):
        refuse_link(os.path.join(out, name))
    os.makedirs(out, exist_ok=True)
    groups = setting_groups(runs)
    markdown = grouped_tables(groups) + errors_note(runs)
    matched_md, matched = matched_section(runs, list(budgets))
    markdown += matched_md
    paired_md, paired = paired_section(directories, list(pairs))
    markdown += paired_md
    cost_md, at_cost_data = matched_cost_section(directories, list(at_cost))
    markdown += cost_md
    summary = {"runs": runs, "matched": matched, "paired": paired, "matched_cost": at_cost_data}
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown)
    for k, group in enumerate(groups, start=1):
        for measure, label, name in PLOTS:
            name = name if len(groups) == 1 else name.replace(".png", f".group{k}.png")
            plot(group, measure, label, os.path.join(out, name))
    return markdown, summary


def grouped_tables(groups: list[list[dict]]) -> str:
    """One table, or one per group of runs sharing a benchmark and decoding settings (never mixed in one table)."""
    if len(groups) == 1:
        return markdown_table(groups[0])
    parts = [f"Warning: these runs differ in benchmark or decoding settings; they are reported as {len(groups)} "
             "separate groups (plots: *.groupK.png).\n"]
    for k, group in enumerate(groups, start=1):
        parts.append(f"\n### Group {k}: {group_heading(group, groups)}\n\n" + markdown_table(group, several=True))
    return "".join(parts)
