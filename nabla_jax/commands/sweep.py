"""``nabla-jax sweep SPEC.toml``: a grid of evaluation cells (resumable), then one report over them all."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid of eval cells from a TOML spec (resumable) and report them together",
        description="Run every cell of a TOML sweep spec as a resumable `nabla-jax eval` directory OUT/<cell>, then "
        "write one report over all cells into OUT/report. The spec format is in nabla_jax/evaluation/sweep.py and "
        "the README; experiments/sweeps/ holds an example.",
    )
    parser.add_argument("spec", help="the sweep's TOML file")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nabla_jax.evaluation.sweep import run_sweep

    markdown, _ = run_sweep(args.spec, progress=not args.no_progress)
    print(markdown, end="")
    return 0
