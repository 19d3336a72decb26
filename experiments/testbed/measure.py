"""Print the testbed's bracket table (floors, greedy, voting, best-of-n by reward, oracle pass@n, AUC) and the
policy's calibration on test problems.

    nice -n 10 python experiments/testbed/measure.py [--problems 500] [--samples 64] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from convert.hf import load_hf_params  # noqa: E402
from nabla_jax.testbed import POLICY_DIR, REWARD_DIR, evaluation, task  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=POLICY_DIR)
    parser.add_argument("--reward", default=REWARD_DIR)
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    policy_config, policy_params = load_hf_params(args.policy)
    reward_config, reward_params = load_hf_params(args.reward)
    problems = [p for _, p in task.distinct_problems("test", args.problems)]  # = the first rows of data/test.jsonl
    b = evaluation.brackets(policy_config, policy_params, reward_config, reward_params, problems, args.samples, args.seed)
    print(evaluation.format_brackets(b))
    calibration = evaluation.calibration(policy_config, policy_params, problems)
    print("\npolicy calibration on the test problems' reference solutions (teacher-forced next-token probabilities):")
    for name, value in calibration.items():
        print(f"  {name:<36} {value:.4f}")
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"brackets": b, "calibration": calibration, "args": vars(args)}, handle, indent=2)
    return {"brackets": b, "calibration": calibration}


if __name__ == "__main__":
    main()
