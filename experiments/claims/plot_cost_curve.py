"""Accuracy against official model calls for the cost-curve sweep: the baselines once (they do not depend on the DTO
learning rate) and the ∇-Reasoner at each learning rate.

    python -m experiments.claims.plot_cost_curve runs/claims/cost_curve OUT.png
"""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nabla_jax.evaluation.report import summarize_directory  # noqa: E402

CELL = "method=greedy,sc,bon,wbon,nabla,nabla_no_dto,nabla.learning_rate="


def lines(root: str) -> dict[str, list[dict]]:
    """label -> the summary rows of one method family, ordered by N."""
    out: dict[str, list[dict]] = {}
    for cell in sorted(os.listdir(root)):
        if not cell.startswith(CELL):
            continue
        lr = cell[len(CELL):]
        for row in summarize_directory(os.path.join(root, cell))["methods"]:
            name = row["method_name"]
            label = f"{name} (DTO lr {lr})" if name == "nabla" else name
            if name != "nabla" and lr != "0.01":
                continue  # identical in every cell
            out.setdefault(label, []).append(row)
    return {k: sorted(v, key=lambda r: r["n"] or 0) for k, v in out.items()}


def main(root: str, path: str) -> None:
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for label, rows in sorted(lines(root).items()):
        x = [r["official_calls"] for r in rows]
        y = [100 * r["accuracy"] for r in rows]
        ax.plot(x, y, marker="o", label=label)
        for r, xi, yi in zip(rows, x, y):
            if r["n"]:
                ax.annotate(str(r["n"]), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("official model calls per problem (N annotated)")
    ax.set_ylabel("accuracy % (200 problems x 3 seeds)")
    ax.set_title("testbed, working verifier: accuracy against cost")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
