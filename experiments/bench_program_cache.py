"""A kept whole program (``nabla_jax.program_cache``) against the compilation cache alone: ``NablaReasoner.generate``
on testbed problems in fresh processes, first and second, with both caches and with the compilation cache only;
seconds to the results side by side, the compilations each process made, whether the records match, and the load
average.

    python -m experiments.bench_program_cache [--problems 12] [--batch-size 4]

Each pair of processes shares its own temporary cache folder. Run it alone (it times).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

RUN = """
import json, sys, time
from nabla_jax import compile_cache, program_cache
from nabla_jax.compile_count import compilations
compile_cache.enable(sys.argv[1])
if sys.argv[2] == "off":
    program_cache.enable(None)
from nabla_jax.bundled import resolve_spec
from nabla_jax.commands.demo import DEMO_NABLA
from nabla_jax.evaluation.datasets import load_benchmark, user_message
from nabla_jax.loading import load_policy
from nabla_jax.reasoner import NablaReasoner
from nabla_jax.rewards import load_reward
policy = load_policy(resolve_spec("testbed:policy"))
reasoner = NablaReasoner(policy, load_reward("testbed:outcome", policy), DEMO_NABLA.replace(max_new_tokens=48))
prompts = [user_message(p) for p in load_benchmark("testbed", int(sys.argv[3])).problems]
began = time.perf_counter()
results = reasoner.generate(prompts, batch_size=int(sys.argv[4]))
seconds = time.perf_counter() - began
records = [[r.text, {k: v for k, v in r.stats.items() if "time" not in k}] for r in results]
print("RESULT " + json.dumps([seconds, compilations(), records]))
"""


def run(folder: str, kept: str, problems: int, batch_size: int):
    done = subprocess.run([sys.executable, "-c", RUN, folder, kept, str(problems), str(batch_size)],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")
    rows = {}
    for kept in ("on", "off"):
        with tempfile.TemporaryDirectory() as folder:
            rows[kept] = [run(folder, kept, args.problems, args.batch_size) for _ in range(2)]
    print(f"load average after:  {os.getloadavg()}")
    print(f"{args.problems} testbed problems at {args.batch_size} rows, nabla@8 (the demo's settings), outcome model")
    print(f"{'caches':<40} {'first s':>8} {'second s':>9} {'compilations':>13}")
    for kept, label in (("on", "compilation cache + kept programs"), ("off", "compilation cache alone")):
        (first, n1, _), (second, n2, _) = rows[kept]
        print(f"{label:<40} {first:8.1f} {second:9.1f} {n1:>6d} / {n2:<5d}")
    records = [r[2] for pair in rows.values() for r in pair]
    print(f"second / first with kept programs: {rows['on'][1][0] / rows['on'][0][0]:.2f}; with the compilation "
          f"cache alone: {rows['off'][1][0] / rows['off'][0][0]:.2f}; all four runs' records equal: "
          f"{all(r == records[0] for r in records)}")


if __name__ == "__main__":
    main()
