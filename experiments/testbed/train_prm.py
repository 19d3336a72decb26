"""Train the testbed process reward model (PRM) from a seed, starting from the shipped likelihood verifier, and
export it.

    python experiments/testbed/train_prm.py --seed 0 --out nabla_jax/testbed/models/prm

Writes config.json (Qwen2ForProcessRewardModel: the verifier's trunk plus extra layers, then Linear(d, d), ReLU,
Linear(d, 2)), model.safetensors, the tokenizer and training.json (settings, data counts, timing, and on the
policy's validation samples at temperature 1, 8 per problem: AUC, within-problem AUC and best-of-8 for the
aggregates min / last / prod / mean, per-step accuracy; where it puts the first error of corrupted references). Use
it as ``--reward nabla_jax/testbed/models/prm --reward-separator none --reward-step-split "\\n"`` (see
nabla_jax/testbed/train_prm.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from convert.hf import load_hf_params, save_hf_params  # noqa: E402
from nabla_jax.testbed import POLICY_DIR, VERIFIER_DIR, encoding  # noqa: E402
from nabla_jax.testbed.script_args import add_settings_arguments, settings_from_args  # noqa: E402
from nabla_jax.testbed.train_prm import PRMTrainingConfig, train_prm  # noqa: E402


def parse_args(argv=None) -> tuple[PRMTrainingConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_settings_arguments(parser, PRMTrainingConfig)
    parser.add_argument("--verifier", default=VERIFIER_DIR, help="the causal LM whose backbone the PRM starts from")
    parser.add_argument("--policy", default=POLICY_DIR, help="the policy whose samples train and validate the PRM")
    parser.add_argument("--out", required=True, help="an empty or missing directory")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    return settings_from_args(PRMTrainingConfig, args), args


def main(argv=None) -> dict:
    cfg, args = parse_args(argv)
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out} is not empty; refusing to overwrite it")
    lm_config, lm_params = load_hf_params(args.verifier)
    policy_config, policy_params = load_hf_params(args.policy)
    start, cpu_start = time.perf_counter(), time.process_time()
    config, params, info = train_prm(lm_config, lm_params, policy_config, policy_params, cfg, progress=not args.quiet)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    save_hf_params(config, params, args.out, tokenizer=encoding.tokenizer())
    info = {"settings": dataclasses.asdict(cfg), "verifier": os.path.relpath(args.verifier), "policy": os.path.relpath(args.policy),
            "train_seconds": seconds, "train_cpu_seconds": cpu_seconds, **info}
    with open(os.path.join(args.out, "training.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
    if not args.quiet:
        print("data:", json.dumps(info["data"]))
        print("last evaluation:", json.dumps(info["history"][-1]))
        print("first error on corruptions:", json.dumps(info["first_error_on_val_corruptions"]))
        print("the verifier on the same samples:", json.dumps(info["verifier_on_the_same_val_samples"]))
        print(f"{seconds:.0f} s ({cpu_seconds:.0f} s CPU)")
    return info


if __name__ == "__main__":
    main()
