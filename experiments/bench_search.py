"""Warm time per problem of each test-time method against best-of-N at the same N on the testbed, side by side in
one run: every method is compiled once first, then the methods take turns (A B C ... A B C ...), each timed over
the same problems through the evaluation's own method functions, and the median of the rounds is reported.

    python -m experiments.bench_search [--n 16] [--problems 16] [--rounds 3]

bon, beam, dvts and pf read the testbed PRM; rgd (k = 4) the outcome model; mix and nabla the likelihood verifier
(mix needs a likelihood reward) at the same N. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    import nabla_jax
    from nabla_jax.commands.demo import DEMO_NABLA
    from nabla_jax.evaluation.context import DecodeSettings, EvalContext
    from nabla_jax.evaluation.datasets import load_benchmark
    from nabla_jax.evaluation.registry import METHODS

    policy = nabla_jax.load_policy("testbed:policy")
    rewards = {"prm": nabla_jax.load_reward("testbed:prm"), "outcome": nabla_jax.load_reward("testbed:outcome"),
               "likelihood": nabla_jax.load_reward("likelihood:testbed:verifier", policy=policy)}
    bench = load_benchmark("testbed", args.problems)
    settings = DecodeSettings.of(DEMO_NABLA.replace(max_new_tokens=args.max_new_tokens))
    plan = [("bon", args.n, "prm"), ("beam", args.n, "prm"), ("dvts", args.n, "prm"), ("pf", args.n, "prm"),
            ("rgd", 4, "outcome"), ("mix", args.n, "likelihood"), ("nabla", args.n, "likelihood")]
    contexts = {}
    for name, n, reward in plan:
        contexts[name] = EvalContext(policy, rewards[reward], bench, settings, options={"nabla": DEMO_NABLA})

    def run(name: str, n: int, seed: int) -> float:
        ctx = contexts[name]
        ctx._memo.clear()  # best-of-N's samples are drawn and scored anew each round
        start = time.perf_counter()
        METHODS[name].run(ctx, bench.problems, seed, (n,))
        return (time.perf_counter() - start) / len(bench.problems)

    print(f"testbed, {args.problems} problems, N = {args.n}, max_new_tokens {args.max_new_tokens}; {load()}")
    for name, n, _ in plan:
        run(name, n, 0)  # compile
    times = {name: [] for name, _, _ in plan}
    for round_ in range(args.rounds):
        for name, n, _ in plan:
            times[name].append(run(name, n, 1 + round_))
    base = statistics.median(times["bon"])
    print(f"{'method':<12} {'s/problem':>10} {'x bon@' + str(args.n):>10}")
    for name, n, reward in plan:
        t = statistics.median(times[name])
        print(f"{name + '@' + str(n):<12} {t:10.4f} {t / base:10.2f}   ({reward})")
    print(load())


if __name__ == "__main__":
    main()
