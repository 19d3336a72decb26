"""A first and a second ``nabla-jax demo`` with an empty persistent compilation cache, and the same without the cache:
wall times side by side, the ratio, the compilations each process made and the load average.

    python -m experiments.bench_compile_cache [--problems 40] [--seeds 0]

Each run is its own process writing its own results directory (nothing resumes), with ``NABLA_JAX_CACHE_DIR`` set
to a fresh temporary directory; only the compilation cache differs between the runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

COUNT = ("import sys, json\n"
         "from nabla_jax.compile_count import compilations\n"
         "from nabla_jax.cli import main\n"
         "code = main(json.loads(sys.argv[1]))\n"
         "print('COMPILATIONS', compilations(), code, file=sys.stderr)\n")


def timed(args: list[str], env: dict) -> tuple[float, int]:
    import json

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", COUNT, json.dumps(args)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    line = [x for x in done.stderr.splitlines() if x.startswith("COMPILATIONS")][-1]
    return seconds, int(line.split()[1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        jax_cache = ("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE")  # this script's own cache, not one set outside
        env = {k: v for k, v in os.environ.items() if not k.startswith(jax_cache)}
        env["NABLA_JAX_CACHE_DIR"] = os.path.join(root, "cache")
        demo = lambda name, *extra: [*extra, "demo", "--problems", str(args.problems), "--seeds", args.seeds,  # noqa: E731
                                     "--no-progress", "--out", os.path.join(root, name)]
        print(f"load average before: {os.getloadavg()}")
        first = timed(demo("first"), env)
        second = timed(demo("second"), env)
        off = timed(demo("off", "--no-compile-cache"), env)
        print(f"load average after:  {os.getloadavg()}")
    print(f"{'run':<34} {'seconds':>8} {'compilations':>13}")
    for name, (seconds, count) in (("first (empty cache)", first), ("second (warm cache)", second),
                                   ("without the cache", off)):
        print(f"{name:<34} {seconds:8.1f} {count:13d}")
    print(f"second / first: {second[0] / first[0]:.2f}; without the cache / first: {off[0] / first[0]:.2f}")


if __name__ == "__main__":
    main()
