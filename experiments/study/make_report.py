"""Every table and figure of the held-out study, from the committed records (``experiments/study/records/``).

    python -m experiments.study.make_report [--records DIR] [--out DIR]

Writes ``study.md`` (per reward: each method's accuracy, costs and warm wall time; each method against the
best-of-N curve at matched FLOPs and at matched wall time, paired) and ``accuracy_vs_flops.png`` /
``accuracy_vs_wall.png`` (per reward: best-of-N's curve, every other method a point with its 95% interval) into
``--out`` (default ``experiments/study/results``), and ``tuning.md`` (the tuning split's tables and the settings
frozen from them: :mod:`experiments.study.tuning_report`). The same records give the same bytes. A reward's runs
beside its main one (``NAME_SUFFIX``) are merged into its tables, their methods renamed as :data:`RENAMED` says.
"""

from __future__ import annotations

import argparse
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REWARDS = {"outcome": "testbed:outcome", "likelihood": "likelihood:testbed:verifier", "prm": "testbed:prm"}
MEASURES = (("flops", "flops", "FLOPs per problem"), ("wall", "wall_time_s", "warm wall time per problem (s)"))
MATCHED = ("flops", "calls", "wall")
# the ∇-Reasoner's variants against each other (each pair where both ran): DTO against blind resampling, the
# tuned and context-only gradients against lr 0.3, the gradient-free control, more runs against one
PAIRS = (("nabla@8", "nabla_no_dto@8"), ("nabla_lr@8", "nabla_no_dto@8"), ("nabla_lr@8", "nabla@8"),
         ("nabla_tuned@8", "nabla_lr@8"), ("nabla_ctx@8", "nabla_lr@8"), ("nabla_ctx@8", "nabla_no_dto@8"),
         ("mix@8", "nabla_lr@8"), ("nabla_best@2", "nabla_best@1"), ("nabla_best@4", "nabla_best@2"),
         ("wbon_tuned@8", "bon@8"), ("dvts@8", "beam@8"))
# run suffix -> {method name in that run: its name in the merged tables}; methods not named keep their names
RENAMED = {
    "lr": {"nabla": "nabla_lr"},  # learning rate 0.3
    "tuned": {"nabla": "nabla_tuned"},  # the settings tuned on the tuning split
    "context": {"nabla": "nabla_ctx"},  # DTO's gradient through the context only
    "best": {},  # nabla_best@k
    "wbon": {"wbon": "wbon_tuned"},  # wBoN at the tuned temperature
    "dvts": {},
    "rgd": {},
}
POOLED = ("bon", "sc", "wbon", "wbon_tuned")  # nested from one pool: curves, not points, in the figures


def merged_records(records_dir: str, reward: str) -> list[dict]:
    """The records of a reward's run and of its runs beside it (``reward_SUFFIX``), renamed by :data:`RENAMED`."""
    from nabla_jax.evaluation.records import load_directory

    records = list(load_directory(os.path.join(records_dir, reward))[1])
    for suffix, names in RENAMED.items():
        beside = os.path.join(records_dir, f"{reward}_{suffix}")
        if not os.path.isdir(beside):
            continue
        for r in load_directory(beside)[1]:
            name = names.get(r["method_name"], r["method_name"])
            records.append({**r, "method": r["method"].replace(f"{r['method_name']}@", f"{name}@", 1),
                            "method_name": name})
    return records


def summary_table(rows: list[dict]) -> str:
    lines = ["| method | accuracy % | 95% CI (problems) | ±95% (seeds) | FLOPs | calls (official) | wall s (warm) |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["method_name"], r["n"] or 0)):
        lo, hi = r["ci95_problems"]
        seeds = r["ci95_seeds"]
        spread = "–" if seeds is None else f"{100 * (seeds[1] - seeds[0]) / 2:.1f}"
        lines.append(f"| {r['method']} | {100 * r['accuracy']:.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] | {spread} | "
                     f"{r['flops']:.3g} | {r['official_calls']:.1f} | {r['wall_time_s']:.4f} |")
    return "\n".join(lines) + "\n"


def figure(panels: dict, field: str, label: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, (reward, rows) in zip(axes[0], panels.items()):
        curve = sorted((r for r in rows if r["method_name"] == "bon"), key=lambda r: r[field])
        ax.plot([r[field] for r in curve], [100 * r["accuracy"] for r in curve], "o-", color="black", label="bon@N")
        for r in curve:
            ax.annotate(str(r["n"]), (r[field], 100 * r["accuracy"]), textcoords="offset points", xytext=(3, -10),
                        fontsize=7)
        for r in sorted((r for r in rows if r["method_name"] not in POOLED), key=lambda r: r["method"]):
            lo, hi = r["ci95_problems"]
            y = 100 * r["accuracy"]
            ax.errorbar([r[field]], [y], yerr=[[y - 100 * lo], [100 * hi - y]], fmt="s", capsize=3, label=r["method"])
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy % (5 seeds; 95% bootstrap over problems)")
        ax.set_title(REWARDS[reward], fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def make_report(records_dir: str, out: str, tuning_dir: str | None = None) -> str:
    from nabla_jax.evaluation.matched import markdown as matched_markdown
    from nabla_jax.evaluation.matched import matched_comparisons
    from nabla_jax.evaluation.metrics import summarize
    from nabla_jax.evaluation.paired import compare
    from nabla_jax.evaluation.paired import markdown as paired_markdown

    os.makedirs(out, exist_ok=True)
    parts = ["# The held-out study", "",
             "Report split (testbed test problems 200:500), seeds 0-4; generated by "
             "`python -m experiments.study.make_report` from `experiments/study/records/` "
             "(runs: `python -m experiments.study.run`). Costs and wall times are means per problem and seed; wall "
             "times are warm (batches that compiled left out).", ""]
    panels = {}
    for reward in REWARDS:
        if not os.path.isdir(os.path.join(records_dir, reward)):
            continue
        records = merged_records(records_dir, reward)
        rows = summarize(records)
        panels[reward] = rows
        parts += [f"## {REWARDS[reward]}", "", summary_table(rows)]
        for measure in MATCHED:
            parts.append(matched_markdown(matched_comparisons(records, measure, reward)))
        methods = {r["method"] for r in rows}
        parts.append(paired_markdown([{**compare(records, a, b), "run": reward} for a, b in PAIRS
                                      if a in methods and b in methods]))
    for measure, field, label in MEASURES:
        figure(panels, field, label, os.path.join(out, f"accuracy_vs_{measure}.png"))
    text = "\n".join(parts)
    with open(os.path.join(out, "study.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    if tuning_dir is not None and os.path.isdir(tuning_dir):
        from experiments.study.tuning_report import report

        with open(os.path.join(out, "tuning.md"), "w", encoding="utf-8") as handle:
            handle.write(report(tuning_dir))
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=os.path.join(HERE, "records"))
    parser.add_argument("--tuning-records", default=os.path.join(HERE, "tuning_records"))
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    print(make_report(args.records, args.out, args.tuning_records))


if __name__ == "__main__":
    main()
