#!/usr/bin/env bash
# SmolLM2's greedy decode step alone (bench_throughput.py's decode_step_ours: the 20 benchmark prompts, 32 steps
# after the prefill, no end token) at batch 1, 8 and 32 in two checkouts, each in its own process, alternating
# ROUNDS times, with the load average and a checksum of the tokens (equal checksums: the same tokens).
#
#   git worktree add /tmp/base BASE_COMMIT
#   bash experiments/archive/ab_decode_smollm2.sh /tmp/base . [ROUNDS=3]
set -euo pipefail
source "$(dirname "$0")/ab_alternate.sh"
rounds="${3:-3}"
alternate "$1" "$2" "$rounds" "$(cat <<'PY'
import os, zlib
import jax, jax.numpy as jnp, numpy as np
import nabla_jax
from experiments.bench_generation import PROBLEMS
from experiments.bench_throughput import decode_step_ours
from nabla_jax.generation import chat_prompt_ids
from nabla_jax.generation.rollouts import RolloutSpec, rollout_batch
from nabla_jax.generation.sampling import SamplingConfig
from nabla_jax.loading import SMOLLM2_NAME, load_policy

policy = load_policy(SMOLLM2_NAME)
encoded = [chat_prompt_ids(policy.tokenizer, p) for p in PROBLEMS]
width, cells = max(len(ids) for ids in encoded), []
for batch in (1, 8, 32):
    rows = (encoded * 4)[:batch]
    lengths = np.asarray([len(r) for r in rows])
    ids = np.asarray([r + [0] * (width - len(r)) for r in rows])
    step = decode_step_ours(policy, ids, lengths, 32)
    args = (jnp.asarray(ids, jnp.int32), jnp.asarray(lengths, jnp.int32), jax.random.split(jax.random.key(0), batch))
    tokens = np.asarray(rollout_batch(policy.config, policy.params, RolloutSpec(33, SamplingConfig(0.0)), *args).tokens)
    checksum = zlib.crc32(tokens.tobytes())
    cells.append(f"batch {batch}: {1e3 * step:.1f} ms, {batch / step:.1f} tok/s (tokens {checksum:08x})")
print(f"{os.path.dirname(os.path.dirname(nabla_jax.__file__))}: " + "; ".join(cells)
      + f"; load average {os.getloadavg()[0]:.2f}", flush=True)
PY
)"
