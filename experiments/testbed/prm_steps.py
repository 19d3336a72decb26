"""The shipped PRM's step-level accuracy against the exact step labels, on the policy's samples of test problems.

    python -m experiments.testbed.prm_steps [--problems 500] [--samples 8] [--seed 0] \
        [--json experiments/testbed/results/prm_steps.json]

A step is a line of the response (and its end); its exact label is 1 iff it and every step before it are the
reference's (:func:`experiments.testbed.process_labels.step_labels`). Prints the accuracy of "probability > 0.5", the step
AUC, the share of positive steps (the accuracy of always answering 1 or 0 is that share or its complement) and
the response-level ranking of each aggregate.
"""

from __future__ import annotations

import argparse
import json
import os

import jax

from convert.hf import load_hf_params
from experiments.testbed import evaluation
from experiments.testbed.process_labels import evaluate_prm
from nabla_jax.rewards import load_reward
from nabla_jax.testbed import POLICY_DIR, task


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    prm = load_reward("testbed:prm")
    policy_config, policy_params = load_hf_params(POLICY_DIR)
    problems = [p for _, p in task.distinct_problems("test", args.problems)]
    responses = evaluation.generate(policy_config, policy_params, problems, jax.random.key(args.seed), 1.0, args.samples)
    metrics = evaluate_prm(prm.config, prm.params, problems, responses)
    out = {"args": vars(args), **metrics}
    print(json.dumps(out, indent=1))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=1)
    return out


if __name__ == "__main__":
    main()
