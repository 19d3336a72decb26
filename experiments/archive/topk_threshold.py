"""The top-k threshold on XLA CPU: the k-th largest logit read as a slice of ``lax.top_k``'s values against their min.

``generation/sampling.py`` keeps every token whose logit is >= the k-th largest. Written as
``top_k(x, k)[0][..., -1:]``, XLA CPU compiled the TopK and its slice into a full sort of the vocabulary; as
``min(top_k(x, k)[0])`` (the same value: the k values come sorted) it keeps the TopK. This script times both forms,
and the sampler as it is now, on SmolLM2's vocabulary (49152), and says which compiled programs hold a sort.

    python -m experiments.archive.topk_threshold [--rows 1,8] [--k 20]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.generation.sampling import SamplingConfig, sample_token

VOCAB = 49152


def by_slice(x, k):
    ranked = jax.lax.top_k(x, k)[0]
    return jnp.where(x >= ranked[..., -1:], x, -jnp.inf)


def by_min(x, k):
    ranked = jax.lax.top_k(x, k)[0]
    return jnp.where(x >= jnp.min(ranked, axis=-1, keepdims=True), x, -jnp.inf)


def timed(fn, *args, repeats: int = 30) -> tuple[float, bool]:
    """(median ms per call, whether the compiled program sorts)"""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - began)
    sorts = " sort(" in fn.lower(*args).compile().as_text()
    return 1e3 * sorted(times)[repeats // 2], sorts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,8")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    k = args.k
    sampler = SamplingConfig(0.6, k, 0.95)
    print("load average %.2f %.2f %.2f" % os.getloadavg())
    for rows in [int(r) for r in args.rows.split(",")]:
        x = jnp.asarray(np.random.default_rng(0).standard_normal((rows, VOCAB)), jnp.float32)
        keys = jax.random.split(jax.random.key(0), rows)
        sliced, sliced_sorts = timed(jax.jit(lambda x: by_slice(x, k)), x)
        least, least_sorts = timed(jax.jit(lambda x: by_min(x, k)), x)
        same = bool(jnp.all(jax.jit(lambda x: by_slice(x, k))(x) == jax.jit(lambda x: by_min(x, k))(x)))
        sample, sample_sorts = timed(jax.jit(jax.vmap(lambda lg, key: sample_token(lg, key, sampler))), x, keys)
        print(f"rows {rows}, k {k}: threshold by slice {sliced:.3f} ms (sort: {sliced_sorts}), by min {least:.3f} ms "
              f"(sort: {least_sorts}): {sliced / least:.0f}x, identical outputs: {same}; sample_token (T 0.6, top-k "
              f"{k}, top-p 0.95) {sample:.3f} ms (sort: {sample_sorts})  (load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
