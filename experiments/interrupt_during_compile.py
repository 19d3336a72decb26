"""Interrupt ``nabla-jax eval`` while its first programs compile, several times, and count how each run ended.

    python -m experiments.interrupt_during_compile [--tries 5] [--program "nabla-jax"]

Each try starts an eval of the testbed (greedy and bon@2 with the outcome reward) with an empty compile cache, sends
SIGINT after 4, 6, 8, ... seconds and prints the exit code: 130 is the clean end ("interrupted ... rerun the same
command to resume"), -11 a crash (SIGSEGV). The program is the console script beside this Python, else on PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5)
    beside = os.path.join(os.path.dirname(sys.executable), "nabla-jax")
    parser.add_argument("--program", default=beside if os.path.exists(beside) else "nabla-jax")
    args = parser.parse_args(argv)
    program = shutil.which(args.program) or args.program
    codes = []
    for i in range(args.tries):
        with tempfile.TemporaryDirectory() as root:
            env = dict(os.environ, NABLA_JAX_CACHE_DIR=os.path.join(root, "cache"))
            process = subprocess.Popen(
                [program, "eval", "--benchmark", "testbed", "--limit", "8", "--max-new-tokens", "16", "--no-progress",
                 "--method", "greedy,bon@2", "--policy", "testbed:policy", "--reward", "testbed:outcome",
                 "--out", os.path.join(root, "out")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(4 + 2 * i)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate()
            last = err.strip().splitlines()[-1] if err.strip() else ""
            print(f"try {i + 1}: exit {process.returncode}  {last[:100]}")
            codes.append(process.returncode)
    print(f"{codes.count(130)} of {len(codes)} exited 130; {sum(c < 0 for c in codes)} crashed")


if __name__ == "__main__":
    main()
