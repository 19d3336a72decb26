"""The testbed training scripts run end to end for a few steps and write loadable checkpoints."""

import importlib
import json
import os

import numpy as np

import nabla_jax
from experiments.testbed import encoding
from nabla_jax.testbed import task

TINY_MODEL = ["--hidden", "16", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--mlp", "32"]


def _script(name):
    return importlib.import_module(f"experiments.testbed.{name}")


def test_training_scripts_write_loadable_checkpoints(tmp_path):
    policy_dir, reward_dir = str(tmp_path / "policy"), str(tmp_path / "reward")
    info = _script("train_policy").main(
        ["--out", policy_dir, "--steps", "4", "--batch-size", "8", "--warmup", "2", "--train-problems", "64",
         "--eval-every", "2", "--eval-problems", "8", "--calibration-problems", "8", "--quiet", *TINY_MODEL]
    )
    assert [h["step"] for h in info["history"]] == [2, 4]
    assert 0.0 <= info["val_calibration"]["ece"] <= 1.0
    teacher_dir = str(tmp_path / "teacher")
    reward_info = _script("train_reward").main(
        ["--policy", policy_dir, "--out", reward_dir, "--teacher-out", teacher_dir, "--teacher-steps", "2",
         "--teacher-batch", "4", "--steps", "2", "--groups-per-batch", "2", "--warmup", "1", "--extra-layers", "1",
         "--problems", "4", "--samples", "2", "--eval-every", "2", "--eval-problems", "4", "--eval-samples", "2", "--quiet"]
    )
    assert reward_info["data"]["pool_problems"] == 4 and reward_info["data"]["candidates_per_group"] == 1 + 5 + 2
    assert [h["step"] for h in reward_info["history"]] == [2]
    assert 0.0 <= reward_info["teacher"]["val_greedy_accuracy"] <= 1.0
    assert {"mean", "token", "ranking", "within_problem_auc", "best_of_2"} <= set(reward_info["history"][0])
    assert nabla_jax.load_policy(teacher_dir).config.num_layers == 1

    for directory in (policy_dir, reward_dir):
        assert {"config.json", "model.safetensors", "tokenizer.json", "training.json"} <= set(os.listdir(directory))
    with open(os.path.join(reward_dir, "config.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    assert raw["architectures"] == ["LlamaForSequenceClassification"] and raw["num_labels"] == 1 and raw["pad_token_id"] == 0

    policy = nabla_jax.load_policy(policy_dir)
    reward = nabla_jax.load_reward(reward_dir)
    assert policy.config.hidden_size == 16 and reward.config.hidden_size == 16
    assert reward.config.num_layers == policy.config.num_layers + 1  # the teacher's backbone + one extra layer
    assert set(reward.params) == {"embed", "layers", "final_norm", "score"}  # the auxiliary head is not exported
    assert policy.tokenizer.get_vocab() == encoding.tokenizer().get_vocab()
    p = task.problem("test", 0)
    ids = encoding.reward_ids(task.format_prompt(p), task.format_solution(p))
    assert np.isfinite(np.asarray(policy.logits(ids))).all()
    assert np.isfinite(np.asarray(reward.score(ids))).all()
    # the reward backbone starts from the policy's, so the two share the embedding before any training
    assert policy.params["embed"]["embedding"].shape == reward.params["embed"]["embedding"].shape
