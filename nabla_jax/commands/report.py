"""``nabla-jax report DIR [DIR...]``: results table, summary JSON and accuracy-against-compute plots."""

from __future__ import annotations

import math


def _budget(text: str) -> tuple[str, float]:
    kind, _, value = text.partition("=")
    measures = {"calls": "official_calls", "full_calls": "full_calls", "flops": "flops"}
    if kind not in measures or not value:
        raise ValueError(f"--budget expects calls=X, full_calls=X or flops=X, got {text!r}")
    try:
        budget = float(value)
    except ValueError:
        raise ValueError(f"--budget {text!r}: {value!r} is not a number") from None
    if not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"--budget {text!r}: the budget must be a positive number")
    return measures[kind], budget


def _pair(text: str) -> tuple[str, str]:
    a, _, b = text.partition(",")
    if not a or not b or "," in b:
        raise ValueError(f"--paired expects two method names A,B (e.g. nabla@8,bon@8), got {text!r}")
    return a.strip(), b.strip()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="summarise eval results directories (table, summary.json, plots)",
        description="Read the records of one or several `nabla-jax eval` directories and write summary.json, "
        "results.md, accuracy_vs_calls.png and accuracy_vs_flops.png into --out (default: the first directory). "
        "Prints the table.",
    )
    parser.add_argument("directories", nargs="+")
    parser.add_argument("--out", default=None, help="where to write the report (default: the first directory)")
    parser.add_argument("--budget", action="append", default=[],
                        help="matched-compute table: calls=X, full_calls=X or flops=X per problem; repeatable")
    parser.add_argument("--paired", action="append", default=[], metavar="A,B",
                        help="paired comparison of two methods on the same problems and seeds (e.g. nabla@8,bon@8): "
                        "difference with a paired bootstrap interval and McNemar's exact test; repeatable")
    parser.add_argument("--matched", action="append", default=[], choices=("flops", "calls", "wall"),
                        help="each method against the best-of-N curve of its run at matched cost: the cheapest bon@k "
                        "costing at least as much and the dearest costing less (paired); repeatable")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nabla_jax.evaluation.report import build_report

    markdown, _ = build_report(args.directories, args.out, [_budget(b) for b in args.budget],
                               [_pair(p) for p in args.paired], args.matched)
    print(markdown, end="")
    return 0
