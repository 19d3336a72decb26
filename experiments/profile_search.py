"""Where a step-level search's time goes on the testbed: one step's rollout of every row, one PRM pass over every
row, the steps a problem takes, and the whole search, timed apart in one run (best of 5), with the load average.

    python -m experiments.profile_search [--n 16] [--problems 16]
"""

from __future__ import annotations

import argparse
import os
import time


def best_time(fn, repeats: int = 5) -> float:
    import jax

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--problems", type=int, default=16)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    import nabla_jax
    from nabla_jax.commands.demo import DEMO_NABLA
    from nabla_jax.evaluation.datasets import load_benchmark
    from nabla_jax.reasoner.problem import encode_problems, stack_problems
    from nabla_jax.search import SearchConfig, StepSearch
    from nabla_jax.search import loop
    from nabla_jax.seeds import seed_key

    policy, prm = nabla_jax.load_policy("testbed:policy"), nabla_jax.load_reward("testbed:prm")
    prompts = [p.problem for p in load_benchmark("testbed", args.problems).problems]
    search = StepSearch(policy, prm, SearchConfig("beam", args.n, 4, 1.0, 48, DEMO_NABLA.rollout.replace(
        repetition_penalty=1.0)))
    problems = stack_problems(search.models, encode_problems(policy, prm, prompts, 48), list(range(len(prompts))),
                              seed_key(0), 48, queue=False)
    kernel = lambda: loop.make_kernel(search.models, search.config, search.spec, search.end_ids, search.rm_pad)  # noqa: E731
    state = loop.search_init(kernel(), problems)
    active = jnp.ones(state.done.shape, bool)
    extend = jax.jit(lambda s: loop.extend(kernel(), problems, s, active))
    score = jax.jit(lambda seq, n: loop.score_rows(kernel(), problems, seq, n))
    whole = lambda: search.generate(prompts, seed=0, batch_size=len(prompts))  # noqa: E731
    grown = extend(state)
    score(grown[0], grown[1])
    results = whole()
    rows = len(prompts) * args.n
    print(f"beam@{args.n}, {len(prompts)} problems ({rows} rows), testbed PRM; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"one step's rollout of every row: {best_time(lambda: extend(state)):.3f} s")
    print(f"one PRM pass over every row:     {best_time(lambda: score(grown[0], grown[1])):.3f} s")
    print(f"steps per problem (mean):        {sum(r.stats['steps'] for r in results) / len(results):.2f}")
    print(f"the whole search:                {best_time(whole, 3):.3f} s")
    print("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
