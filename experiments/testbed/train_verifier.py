"""Train the testbed's likelihood verifier: the shipped policy trained further on reference solutions (the
"teacher" of experiments/testbed/recipes/reward.py), exported as a causal LM for ``--reward likelihood:PATH``.

    python -m experiments.testbed.train_verifier --seed 0 --out nabla_jax/testbed/models/verifier

Writes config.json (LlamaForCausalLM), model.safetensors, the tokenizer and training.json (settings, final loss,
greedy accuracy on validation problems, and the ranking quality of its mean clipped token log-probability on the
policy's own samples at temperature 1: AUC, within-problem AUC, best-of-8).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import numpy as np

from convert.hf import load_hf_params, save_hf_params
from experiments.testbed import encoding, evaluation
from experiments.testbed.recipes.reward import RewardTrainingConfig, teacher_ranking, train_teacher
from experiments.testbed.recipes.script_args import add_settings_arguments, settings_from_args
from nabla_jax.testbed import POLICY_DIR, task


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_settings_arguments(parser, RewardTrainingConfig)
    parser.add_argument("--policy", default=POLICY_DIR, help="the policy to train further")
    parser.add_argument("--out", required=True, help="an empty or missing directory")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    cfg = settings_from_args(RewardTrainingConfig, args)
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out} is not empty; refusing to overwrite it")
    config, params = load_hf_params(args.policy)
    start, cpu_start = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(cfg.seed)
    teacher, info = train_teacher(config, params, cfg, rng, progress=not args.quiet)
    val = task.problems("val", cfg.eval_problems)
    eval_key = jax.random.split(jax.random.key(cfg.seed), 3)[2]
    val_responses = evaluation.generate(config, params, val, eval_key, cfg.temperature, cfg.eval_samples)
    info["ranking_on_val_samples"] = teacher_ranking(config, teacher, val, val_responses, cfg.clip)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k.startswith("teacher") or k in ("seed", "clip", "data_start", "eval_problems", "eval_samples", "temperature")}
    info = {"settings": settings, "policy": os.path.relpath(args.policy), "train_seconds": time.perf_counter() - start,
            "train_cpu_seconds": time.process_time() - cpu_start, **info}
    save_hf_params(config, teacher, args.out, tokenizer=encoding.tokenizer())
    with open(os.path.join(args.out, "training.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
    if not args.quiet:
        print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
