#!/usr/bin/env bash
# The ∇-Reasoner on SmolLM2 (bench_throughput.py's smollm2_reasoner, one problem, official settings, 32 new tokens)
# in two checkouts, each in its own process, alternating ROUNDS times: first call (compile) and two warm runs each,
# with the load average. For before/after figures of a change that two checkouts of one process cannot hold.
#
#   git worktree add /tmp/base BASE_COMMIT
#   bash experiments/archive/ab_nabla_smollm2.sh /tmp/base . [ROUNDS=2]
set -euo pipefail
source "$(dirname "$0")/ab_alternate.sh"
rounds="${3:-2}"
alternate "$1" "$2" "$rounds" "$(cat <<'PY'
import os, time
import nabla_jax
from experiments.bench_throughput import SMOLLM2_NABLA_PROMPT, smollm2_reasoner
reasoner = smollm2_reasoner({})
began = time.perf_counter()
result = reasoner.generate(SMOLLM2_NABLA_PROMPT, seed=0, batch_size=1)[0]
first, warm = time.perf_counter() - began, []
for _ in range(2):
    began = time.perf_counter()
    reasoner.generate(SMOLLM2_NABLA_PROMPT, seed=0, batch_size=1)
    warm.append(time.perf_counter() - began)
print(f"{os.path.dirname(os.path.dirname(nabla_jax.__file__))}: first {first:.1f} s, warm {warm[0]:.1f} {warm[1]:.1f} s, "
      f"{result.stats['model_calls_official']} official calls, {len(result.token_ids)} tokens, "
      f"load average {os.getloadavg()[0]:.2f}", flush=True)
PY
)"
