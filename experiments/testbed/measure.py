"""Print the testbed's bracket table (floors, greedy, voting, oracle pass@n, and each verifier's best-of-n and AUC)
and the policy's calibration on test problems. Verifiers are scored through the library's reward interface
(:func:`nabla_jax.rewards.scoring.score_batch`), exactly as best-of-N and the ∇-Reasoner score them.

    nice -n 10 python -m experiments.testbed.measure [--problems 500] [--samples 64] [--seed 0] \
        [--verifier NAME=SPEC ...]

SPEC is anything ``--reward`` takes, read with the checkpoint's own reading options. The defaults measure the four
shipped rewards: the outcome reward model (``testbed:outcome``), the process reward model (``testbed:prm``,
aggregated by ``min``), the likelihood verifier (``likelihood:testbed:verifier``, clip -6) and the chance-level
outcome classifier (``testbed:reward``, the negative control).
"""

from __future__ import annotations

import argparse
import json
import time

from convert.hf import load_hf_params
from experiments.testbed import encoding, evaluation
from nabla_jax.rewards import load_reward
from nabla_jax.rewards.scoring import score_batch
from nabla_jax.templates import reward_input_template, reward_pad_id
from nabla_jax.testbed import POLICY_DIR, task

DEFAULT_VERIFIERS = ("outcome=testbed:outcome", "process=testbed:prm", "likelihood=likelihood:testbed:verifier",
                     "classifier=testbed:reward")


def interface_scorer(spec: str):
    """``fn(prompts, responses) -> scores`` through the reward interface (testbed texts; the response ends with
    the EOS the policy emitted, as every method scores it)."""
    reward = load_reward(spec)
    pad = reward_pad_id(reward.tokenizer, reward.config)
    eos = encoding.tokenizer().eos_token_id

    def score(prompts, responses):
        templates = {p: reward_input_template(reward, p) for p in set(prompts)}
        rows = [(templates[p][0], encoding.tokenizer().encode(r, add_special_tokens=False) + [eos], templates[p][1])
                for p, r in zip(prompts, responses)]
        return score_batch(reward, rows, pad, max_rows=512)

    return score


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=POLICY_DIR)
    parser.add_argument("--verifier", action="append", help="NAME=SPEC (repeatable; default: the shipped two)")
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-calibration", action="store_true")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    policy_config, policy_params = load_hf_params(args.policy)
    scorers = {}
    for item in args.verifier or DEFAULT_VERIFIERS:
        name, _, spec = item.partition("=")
        if not spec:
            raise SystemExit(f"--verifier {item!r}: expected NAME=SPEC")
        scorers[name] = interface_scorer(spec)
    problems = [p for _, p in task.distinct_problems("test", args.problems)]  # = the first rows of data/test.jsonl
    b = evaluation.brackets(policy_config, policy_params, scorers, problems, args.samples, args.seed)
    print(evaluation.format_brackets(b))
    calibration = {} if args.no_calibration else evaluation.calibration(policy_config, policy_params, problems)
    if calibration:
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
