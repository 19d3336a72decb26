"""Train the testbed policy from a seed and export it as a Hugging Face checkpoint.

    nice -n 10 python -m experiments.testbed.train_policy --seed 0 --out nabla_jax/testbed/models/policy

Stops at the first evaluation whose greedy validation accuracy reaches --target-accuracy (see
experiments/testbed/recipes/policy.py for why), then writes config.json, model.safetensors, the tokenizer and
training.json (settings, history, calibration on validation problems).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

from convert.hf import save_hf_params
from experiments.testbed import encoding, evaluation
from experiments.testbed.recipes.policy import PolicyTrainingConfig, train_policy
from experiments.testbed.recipes.script_args import add_settings_arguments, settings_from_args
from nabla_jax.testbed import task


def parse_args(argv=None) -> tuple[PolicyTrainingConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_settings_arguments(parser, PolicyTrainingConfig)
    parser.add_argument("--out", required=True, help="an empty or missing directory")
    parser.add_argument("--calibration-problems", type=int, default=512)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    return settings_from_args(PolicyTrainingConfig, args), args


def main(argv=None) -> dict:
    cfg, args = parse_args(argv)
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out} is not empty; refusing to overwrite it")
    start, cpu_start = time.perf_counter(), time.process_time()
    model_config, params, history = train_policy(cfg, progress=not args.quiet)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    calibration = evaluation.calibration(model_config, params, task.problems("val", args.calibration_problems))
    save_hf_params(model_config, params, args.out, tokenizer=encoding.tokenizer())
    info = {"settings": dataclasses.asdict(cfg), "train_seconds": seconds, "train_cpu_seconds": cpu_seconds, "history": history, "val_calibration": calibration}
    with open(os.path.join(args.out, "training.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
    if not args.quiet:
        last = history[-1]
        print(f"stopped at step {last['step']}: loss {last['loss']:.4f}, val greedy accuracy {last['val_accuracy']:.3f}, {seconds:.0f} s ({cpu_seconds:.0f} s CPU)")
        print("val calibration:", json.dumps(calibration, indent=1))
    return info


if __name__ == "__main__":
    main()
