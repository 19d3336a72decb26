"""Train the testbed reward model from a seed on the shipped (or any) testbed policy and export it.

    python -m experiments.testbed.train_reward --seed 0 \
        --policy nabla_jax/testbed/models/policy --out nabla_jax/testbed/models/reward

Writes config.json (LlamaForSequenceClassification, num_labels 1, pad_token_id 0), model.safetensors, the
tokenizer and training.json (settings, data counts, the teacher's accuracy and ranking quality, validation
AUC / best-of-n history). ``--teacher-out DIR`` also keeps the teacher LM (see experiments/testbed/recipes/reward.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

from convert.hf import load_hf_params, save_hf_params
from experiments.testbed import encoding
from experiments.testbed.recipes.reward import RewardTrainingConfig, train_reward
from experiments.testbed.recipes.script_args import add_settings_arguments, settings_from_args
from nabla_jax.testbed import POLICY_DIR


def parse_args(argv=None) -> tuple[RewardTrainingConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_settings_arguments(parser, RewardTrainingConfig)
    parser.add_argument("--policy", default=POLICY_DIR, help="the policy checkpoint whose samples train the reward")
    parser.add_argument("--out", required=True, help="an empty or missing directory")
    parser.add_argument("--teacher-out", default=None, help="also save the teacher LM here (an empty or missing directory)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    return settings_from_args(RewardTrainingConfig, args), args


def main(argv=None) -> dict:
    cfg, args = parse_args(argv)
    for directory in filter(None, (args.out, args.teacher_out)):
        if os.path.isdir(directory) and os.listdir(directory):
            raise SystemExit(f"{directory} is not empty; refusing to overwrite it")
    policy_config, policy_params = load_hf_params(args.policy)
    start, cpu_start = time.perf_counter(), time.process_time()
    reward_config, params, info, teacher_params = train_reward(policy_config, policy_params, cfg, progress=not args.quiet)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    save_hf_params(reward_config, params, args.out, tokenizer=encoding.tokenizer())
    if args.teacher_out:
        save_hf_params(policy_config, teacher_params, args.teacher_out, tokenizer=encoding.tokenizer())
    info = {"settings": dataclasses.asdict(cfg), "policy": os.path.relpath(args.policy), "train_seconds": seconds, "train_cpu_seconds": cpu_seconds, **info}
    with open(os.path.join(args.out, "training.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
    if not args.quiet:
        print("data:", json.dumps(info["data"]))
        print("teacher:", json.dumps(info["teacher"]))
        print("last evaluation:", json.dumps(info["history"][-1]))
        print(f"{seconds:.0f} s ({cpu_seconds:.0f} s CPU)")
    return info


if __name__ == "__main__":
    main()
