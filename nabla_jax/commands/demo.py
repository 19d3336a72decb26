"""``nabla-jax demo``: the main job on the bundled testbed (no downloads): greedy, self-consistency, best-of-N, the
∇-Reasoner and blind resampling on the synthetic arithmetic task, then the table and the scaling plots."""

from __future__ import annotations

import os
import time

from nabla_jax.reasoner.config import NablaConfig

# The official MATH-500 settings, except the gradient-norm test: its threshold (4) is calibrated to a 7B reward
# model's scale, and the testbed reward's gradients are far smaller, so it would veto every position.
DEMO_NABLA = NablaConfig(grad_threshold=None)
# The testbed's rewards, by kind (each checkpoint stores its own reading options: the PRM's step split, the
# verifier's clip). The outcome model is the paper's setting and the default; the classifier ranks at chance and
# is kept as a negative control. Their ranking and repair rates: docs/testbed.md.
REWARDS = {
    "outcome": "testbed:outcome",
    "process": "testbed:prm",
    "likelihood": "likelihood:testbed:verifier",
    "classifier": "testbed:reward",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on the bundled testbed (greedy, sc@N, bon@N, nabla@N, nabla_no_dto@N) and report",
        description=__doc__,
    )
    parser.add_argument("--problems", default="200", metavar="N|A:B",
                        help="the first N test problems, or problems A to B-1 (default 200: the tuning split 0:200; "
                        "200:500 is the report split)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--n", type=int, default=8, help="budget: samples for sc/bon, max_n_generations for nabla")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--reward", choices=list(REWARDS), default="outcome",
                        help="outcome: the outcome reward model (default, the paper's setting); process: the PRM "
                        "(aggregated by min); likelihood: the verifier LM's clipped mean log-probability; "
                        "classifier: the chance-level outcome classifier, a negative control")
    parser.add_argument("--out", default="runs/demo", help="results directory (resumable; default runs/demo)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nabla_jax.bundled import resolve_spec
    from nabla_jax.commands.parsing import seed_list
    from nabla_jax.evaluation.datasets import parse_problem_range
    from nabla_jax.evaluation.context import DecodeSettings
    from nabla_jax.evaluation.report import build_report
    from nabla_jax.evaluation.runner import run_eval

    policy = resolve_spec("testbed:policy")
    reward = REWARDS[args.reward]
    if not os.path.isdir(policy):
        raise FileNotFoundError(f"bundled testbed policy missing: {policy} (reinstall nabla-jax)")
    if args.n < 1:
        raise ValueError("--n must be >= 1")
    parse_problem_range(args.problems)  # a bad range is refused before anything runs
    budgets = tuple(sorted({1, 2, 4, args.n} & set(range(1, args.n + 1))))
    if os.path.isdir(resolve_spec(reward).split(":", 1)[-1]):
        methods = f"greedy,sc,bon,wbon,nabla@{args.n},nabla_no_dto@{args.n}"
    else:
        # this build ships no testbed reward model: only the methods that need none can run
        print(f"note: no bundled testbed reward model at {reward}; running the reward-free methods only")
        methods, reward = "greedy,sc", None
    print(f"testbed problems {args.problems} x seeds {args.seeds}; {methods}; sc/bon at N in {list(budgets)}")
    if reward is not None:
        print(f"reward: {args.reward} ({reward})")
        print(f"nabla settings: official MATH-500 defaults except {DEMO_NABLA.changed_settings()}")
    from nabla_jax.compile_count import compile_seconds

    began, compiling = time.perf_counter(), compile_seconds()
    run_eval(
        "testbed", methods, policy, reward, out=args.out, seeds=seed_list(args.seeds), ns=budgets,
        problems=args.problems,
        settings=DecodeSettings.of(DEMO_NABLA.replace(max_new_tokens=args.max_new_tokens)), batch_size=args.batch_size,
        options={"wbon_temperature": 1.0, "nabla": DEMO_NABLA}, progress=not args.no_progress,
    )
    spent, compiling = time.perf_counter() - began, compile_seconds() - compiling
    print(f"{spent:.0f} s, of which {compiling:.0f} s compiling (compiled programs are kept in the compile cache, so a "
          "second run skips most of it; nabla-jax cache info)")
    markdown, _ = build_report([args.out], args.out)
    print(markdown, end="")
    print(f"\nplots and summary written to {args.out}/ (accuracy_vs_calls.png, accuracy_vs_flops.png, summary.json)")
    return 0
