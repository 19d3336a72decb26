"""The ∇-Reasoner through ``nabla-jax eval`` at batch size 1 against the official code's time, and where a problem's
time goes, side by side in one run (warm: each path is run once first).

    python -m experiments.profile_eval [--problems 30] [--repeats 3]

The testbed policy and outcome model, the demo's ∇-Reasoner (nabla@8), 48 new tokens. Printed, per problem:

* ``eval`` unprofiled (median of ``--repeats`` whole runs, checkpoint loading included) and the Python API
  (``NablaReasoner.generate`` on all the problems in one call at batch size 1), each against the official code's
  time from ``experiments/official_timing.toml`` (the official code is not vendored, so it is not re-run here);
* ``eval`` under the profiler: the device loop (the jitted decode, blocked on), stacking the problems for the
  device, encoding, writing records; the rest is the harness's Python;
* the floor: one DTO full step (a forward/backward of both models over the ahead tokens) timed alone at the
  smallest and the largest ahead buffer, times the full steps a problem takes. On XLA CPU a full step of these tiny
  models is about a thousand small operations, each a few microseconds whatever its size, so this product bounds
  the device loop from below.

Read the ratios, not the absolute times; run it alone (it times).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import time
import tomllib

from experiments.timing import median_time

PARTS = {  # label -> (file suffix, function name) of the profiled functions whose cumulative time is reported
    "device loop (jitted decode, blocked on)": ("jax/_src/api.py", "block_until_ready"),
    "stacking problems for the device": ("nabla_jax/reasoner/problem.py", "stack_problems"),
    "encoding prompts (templates, tokenizer)": ("nabla_jax/reasoner/problem.py", "encode_problems"),
    "writing records": ("nabla_jax/evaluation/records.py", "append"),
    "loading the checkpoints (once per run)": ("nabla_jax/evaluation/runner.py", "context"),
}
OFFICIAL = os.path.join(os.path.dirname(__file__), "official_timing.toml")


def official_timing() -> dict:
    with open(OFFICIAL, "rb") as handle:
        return tomllib.load(handle)["testbed_nabla_batch1"]


def eval_args(problems: int, out: str) -> list[str]:
    return ["eval", "--benchmark", "testbed", "--limit", str(problems), "--max-new-tokens", "48", "--no-progress",
            "--method", "nabla@8", "--batch-size", "1", "--policy", "testbed:policy", "--reward", "testbed:outcome",
            "--nabla-grad-threshold", "none", "--out", out]


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(row[3] for (path, _, function), row in stats.stats.items()
               if function == name and path.endswith(suffix))


def quiet_eval(cli, problems: int, out: str) -> float:
    """Seconds of one whole ``eval`` run (its summary line swallowed)."""
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        cli(eval_args(problems, out))
    return time.perf_counter() - began


def full_step_seconds(reasoner, prompts, repeats: int) -> dict[int, float]:
    """Median seconds of one DTO full step alone, by ahead buffer (the smallest and the whole), on the first
    problem's state after its first rollout (its prefix cache built): the jitted forward/backward the loop runs."""
    import jax

    from nabla_jax.dto.loss import loss_and_onehot_grad
    from nabla_jax.dto.prefix_cache import ahead_sizes
    from nabla_jax.reasoner import phases
    from nabla_jax.reasoner.loop import make_kernel, nabla_init
    from nabla_jax.seeds import seed_key

    models, cfg, pad = reasoner.models, reasoner.config, reasoner.rm_pad
    problems = reasoner.stack_problems(reasoner.encode(prompts[:1]), [0], seed_key(0), queue=False)
    kernel = make_kernel(models, cfg, reasoner.spec(), pad, 1)
    state = jax.tree.map(lambda x: x[0], jax.jit(lambda p: nabla_init(kernel, p))(problems))
    problem = jax.tree.map(lambda x: x[0], problems)
    state = state._replace(prefix=jax.jit(lambda: phases.prefix_cache(models, problem, state, pad))())
    logits = phases.ahead_logits(models, state)
    y = jax.nn.one_hot(logits.argmax(-1), logits.shape[-1])
    dto = phases.dto_problem(models, problem, state, pad)
    sizes = ahead_sizes(cfg.max_new_tokens)
    out = {}
    for size in (sizes[0], sizes[-1]):
        step = jax.jit(lambda y, cache, dto, size=size: loss_and_onehot_grad(models, cfg.dto, dto, cache, y, size))
        run = lambda: jax.block_until_ready(step(y, state.prefix, dto))  # noqa: E731
        run()
        out[size] = median_time(run, 20 * repeats)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from nabla_jax.bundled import resolve_spec
    from nabla_jax.cli import main as cli
    from nabla_jax.commands.demo import DEMO_NABLA
    from nabla_jax.evaluation.datasets import load_benchmark, user_message
    from nabla_jax.loading import load_policy
    from nabla_jax.reasoner import NablaReasoner
    from nabla_jax.rewards import load_reward

    n = args.problems
    work = tempfile.mkdtemp()
    try:
        quiet_eval(cli, n, os.path.join(work, "warm"))  # compiles
        evals = sorted(quiet_eval(cli, n, os.path.join(work, f"timed{i}")) for i in range(args.repeats))
        profile = cProfile.Profile()
        profile.enable()
        quiet_eval(cli, n, os.path.join(work, "profiled"))
        profile.disable()
    finally:
        shutil.rmtree(work)
    stats = pstats.Stats(profile)
    total = cumulative(stats, "nabla_jax/evaluation/runner.py", "run_eval")

    policy = load_policy(resolve_spec("testbed:policy"))
    reasoner = NablaReasoner(policy, load_reward("testbed:outcome", policy), DEMO_NABLA.replace(max_new_tokens=48))
    prompts = [user_message(p) for p in load_benchmark("testbed", n).problems]
    results = reasoner.generate(prompts, batch_size=1)  # compiles for this count
    api = median_time(lambda: reasoner.generate(prompts, batch_size=1), args.repeats)
    full_steps = sum(r.stats["dto_executed_steps"] for r in results) / n
    floor = full_step_seconds(reasoner, prompts, args.repeats)

    official = official_timing()
    eval_s = evals[len(evals) // 2] / n
    print(f"load average {os.getloadavg()[0]:.2f}; {n} testbed problems, nabla@8, batch size 1")
    print(f"{'':44s} {'s per problem':>14s} {'official / this':>16s}")
    print(f"{'official code (' + os.path.basename(OFFICIAL) + ')':44s} {official['seconds_per_problem']:14.4f} "
          f"{1.0:15.2f}x")
    for label, seconds in (("eval, whole (unprofiled, median)", eval_s), ("Python API, one call (median)", api / n)):
        print(f"{label:44s} {seconds:14.4f} {official['seconds_per_problem'] / seconds:15.2f}x")
    print(f"target: {official['target_speedup']}x the official code, "
          f"{official['seconds_per_problem'] / official['target_speedup']:.4f} s per problem")
    print()
    print(f"{'eval under the profiler':44s} {'s per problem':>14s} {'share':>8s}")
    print(f"{'eval, whole':44s} {total / n:14.4f} {'100.0%':>8s}")
    shown = 0.0
    for label, (suffix, name) in PARTS.items():
        seconds = cumulative(stats, suffix, name)
        shown += seconds
        print(f"{label:44s} {seconds / n:14.4f} {100 * seconds / total:7.1f}%")
    print(f"{'the rest (harness Python)':44s} {(total - shown) / n:14.4f} {100 * (total - shown) / total:7.1f}%")
    print()
    steps = ", ".join(f"{1e3 * s:.2f} ms at {size} ahead slots" for size, s in floor.items())
    least = min(floor.values())
    print(f"one DTO full step alone: {steps}; {full_steps:.2f} executed full steps per problem, so at least "
          f"{full_steps * least:.4f} s per problem in full steps alone "
          f"(at most {official['seconds_per_problem'] / (full_steps * least):.1f}x the official code)")


if __name__ == "__main__":
    main()
