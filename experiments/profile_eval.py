"""Where a problem's time goes when the ∇-Reasoner runs through ``nabla-jax eval`` at batch size 1, against the same
problems through the Python API in one call, side by side in one run (warm: each is run once first).

    python -m experiments.profile_eval [--problems 30] [--repeats 3]

The testbed policy and outcome model, the demo's ∇-Reasoner (nabla@8), 48 new tokens. Under the profiler, per
problem: the whole eval, the device loop (the jitted decode, blocked on), stacking the problems for the device, and
writing records; the rest is the harness's Python. Then the API: ``NablaReasoner.generate`` on all the problems in
one call at batch size 1, unprofiled, median of ``--repeats``. Read the shares and the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile

PARTS = {  # label -> (file suffix, function name) of the profiled functions whose cumulative time is reported
    "device loop (jitted decode, blocked on)": ("jax/_src/api.py", "block_until_ready"),
    "stacking problems for the device": ("nabla_jax/reasoner/problem.py", "stack_problems"),
    "encoding prompts (templates, tokenizer)": ("nabla_jax/reasoner/problem.py", "encode_problems"),
    "writing records": ("nabla_jax/evaluation/records.py", "append"),
}


def eval_args(problems: int, out: str) -> list[str]:
    return ["eval", "--benchmark", "testbed", "--limit", str(problems), "--max-new-tokens", "48", "--no-progress",
            "--method", "nabla@8", "--batch-size", "1", "--policy", "testbed:policy", "--reward", "testbed:outcome",
            "--nabla-grad-threshold", "none", "--out", out]


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(row[3] for (path, _, function), row in stats.stats.items()
               if function == name and path.endswith(suffix))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from experiments.timing import median_time
    from nabla_jax.bundled import resolve_spec
    from nabla_jax.cli import main as cli
    from nabla_jax.commands.demo import DEMO_NABLA
    from nabla_jax.evaluation.datasets import load_benchmark, user_message
    from nabla_jax.loading import load_policy
    from nabla_jax.reasoner import NablaReasoner
    from nabla_jax.rewards import load_reward

    work = tempfile.mkdtemp()
    try:
        cli(eval_args(args.problems, os.path.join(work, "warm")))  # compiles
        profile = cProfile.Profile()
        profile.enable()
        cli(eval_args(args.problems, os.path.join(work, "profiled")))
        profile.disable()
    finally:
        shutil.rmtree(work)
    stats = pstats.Stats(profile)
    total = cumulative(stats, "nabla_jax/evaluation/runner.py", "run_eval")

    policy = load_policy(resolve_spec("testbed:policy"))
    reasoner = NablaReasoner(policy, load_reward("testbed:outcome", policy),
                             DEMO_NABLA.replace(max_new_tokens=48))
    prompts = [user_message(p) for p in load_benchmark("testbed", args.problems).problems]
    reasoner.generate(prompts, batch_size=1)  # compiles for this count
    api = median_time(lambda: reasoner.generate(prompts, batch_size=1), args.repeats)

    n = args.problems
    print(f"load average {os.getloadavg()[0]:.2f}; {n} testbed problems, nabla@8, batch size 1")
    print(f"{'part':44s} {'s per problem':>14s} {'share of eval':>14s}")
    print(f"{'eval, whole (profiled)':44s} {total / n:14.4f} {'100.0%':>14s}")
    shown = 0.0
    for label, (suffix, name) in PARTS.items():
        seconds = cumulative(stats, suffix, name)
        shown += seconds
        print(f"{label:44s} {seconds / n:14.4f} {100 * seconds / total:13.1f}%")
    print(f"{'the rest (harness Python)':44s} {(total - shown) / n:14.4f} {100 * (total - shown) / total:13.1f}%")
    print(f"{'Python API, one call (unprofiled, median)':44s} {api / n:14.4f}")
    print(f"eval / API: {total / api:.2f}x (the profiler's own overhead included in eval)")


if __name__ == "__main__":
    main()
