"""How much batching can buy the testbed on this CPU: the per-row cost of its two building blocks against the rows.

The issue's testbed targets ask a problem to cost far less in a batch than alone (greedy: batch 32 at least 10x the
throughput of batch 1; the ∇-Reasoner: a problem at 16 rows at most 0.25x its cost alone). That needs work whose
cost per row falls with the rows. This script times the blocks those runs are made of, as compiled programs on
their own, at growing row counts:

* a decode step of the testbed policy (one token per row, 32-slot prompt buffer, 64 new tokens: the rollouts);
* a forward and backward of the policy over 96 tokens (the shape of a DTO full step or a gradient-selector pass).

Each line prints the time per call, per row, and per row against one row. A per-row ratio near 1 means the rows
already cost what they cost alone: no schedule of batches makes that work cheaper per problem.

    python -m experiments.archive.testbed_batch_limits [--rows 1,4,8,16,32]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.generation.rollouts import RolloutSpec, rollout_batch
from nabla_jax.generation.sampling import SamplingConfig
from nabla_jax.loading import load_policy
from nabla_jax.models import decoder
from nabla_jax.testbed import POLICY_DIR as POLICY


def median_seconds(fn, repeats: int = 15) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - began)
    return sorted(times)[repeats // 2]


def decode_step(policy, rows: int, new_tokens: int = 64, buffer: int = 32) -> float:
    """Seconds per decode step at ``rows`` rows (a 1-token run subtracted, so the prefill drops out)."""
    rng = np.random.default_rng(0)
    args = (jnp.asarray(rng.integers(3, policy.config.vocab_size, (rows, buffer)), jnp.int32),
            jnp.full((rows,), buffer - 4, jnp.int32), jax.random.split(jax.random.key(0), rows))

    def run(n):
        spec = RolloutSpec(n, SamplingConfig(0.0), (), (), 0)
        return lambda: rollout_batch(policy.config, policy.params, spec, *args).tokens

    return (median_seconds(run(new_tokens + 1)) - median_seconds(run(1))) / new_tokens


def forward_backward(policy, rows: int, length: int = 96) -> float:
    """Seconds per forward and backward (to the input embeddings) over ``length`` tokens at ``rows`` rows."""
    config = policy.config

    def loss(params, embeds, positions, valid):
        hidden, _ = decoder.forward(config, params, embeds, positions, valid)
        return jnp.sum(hidden * hidden)

    grad = jax.jit(jax.grad(loss, argnums=1))
    embeds = jnp.asarray(np.random.default_rng(0).standard_normal((rows, length, config.hidden_size)), jnp.float32)
    positions = jnp.broadcast_to(jnp.arange(length), (rows, length))
    valid = jnp.ones((rows, length), bool)
    return median_seconds(lambda: grad(policy.params, embeds, positions, valid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,4,8,16,32")
    args = parser.parse_args()
    rows = [int(r) for r in args.rows.split(",")]
    policy = load_policy(POLICY)
    print("load average %.2f %.2f %.2f" % os.getloadavg())
    for name, block in (("decode step", decode_step), ("forward+backward, 96 tokens", forward_backward)):
        base = None
        for r in rows:
            seconds = block(policy, r)
            per_row = seconds / r
            base = base or per_row
            print(f"[{name}] rows {r:3d}: {1e3 * seconds:8.3f} ms per call, {1e3 * per_row:7.3f} ms per row, "
                  f"{per_row / base:.2f}x one row's  (load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
