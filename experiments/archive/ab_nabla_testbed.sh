#!/usr/bin/env bash
# The testbed ∇-Reasoner of `bench_throughput.py --parts nabla` (demo settings, 32 problems, the queue) in two
# checkouts, each in its own process, alternating ROUNDS times: ms per problem at each row count (two warm runs
# each, after one that compiles), with the load average. For before/after figures of a change.
#
#   git worktree add /tmp/base BASE_COMMIT
#   bash experiments/archive/ab_nabla_testbed.sh /tmp/base . [ROUNDS=2] [ROWS=1,32]
set -euo pipefail
source "$(dirname "$0")/ab_alternate.sh"
rounds="${3:-2}"
export AB_ROWS="${4:-1,32}"
alternate "$1" "$2" "$rounds" "$(cat <<'PY'
import os, time
import nabla_jax
from experiments.bench_throughput import TESTBED, demo_reasoner, testbed_prompts
reasoner = demo_reasoner(os.path.join(TESTBED, "policy"), "likelihood:" + os.path.join(TESTBED, "verifier"), -6.0,
                         max_n_generations=8, max_new_tokens=64, rollout_temperature=0.6, rollout_top_k=20,
                         rollout_top_p=0.95)
prompts = testbed_prompts(32)
cells = []
for rows in (int(r) for r in os.environ["AB_ROWS"].split(",")):
    reasoner.generate(prompts, seed=0, batch_size=rows)
    warm = []
    for _ in range(2):
        began = time.perf_counter()
        reasoner.generate(prompts, seed=0, batch_size=rows)
        warm.append(1e3 * (time.perf_counter() - began) / len(prompts))
    cells.append(f"{rows} rows {warm[0]:.1f} {warm[1]:.1f}")
print(f"{os.path.dirname(os.path.dirname(nabla_jax.__file__))}: ms/problem: {'; '.join(cells)}; "
      f"load average {os.getloadavg()[0]:.2f}", flush=True)
PY
)"
