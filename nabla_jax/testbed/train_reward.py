"""Training of the testbed reward model on the policy's own samples and on corrupted reference solutions.

Each problem contributes one group: ``samples`` policy responses (graded exactly), the reference solution and a
few corruptions. The loss is Bradley–Terry over every (correct, incorrect) pair inside a group (ranking answers
to the same problem is what best-of-n and ∇-Reasoner need), a small pointwise logistic term, and a dense
auxiliary term (see :func:`training.reward_loss`). The model starts from the policy's backbone with a fresh
scalar head.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from nabla_jax.testbed import corrupt, encoding, evaluation, task, training

POLICY_POOL_END = 100_000  # the policy trains on train problems [0, this); the reward data starts past it


@dataclasses.dataclass(frozen=True)
class RewardTrainingConfig:
    seed: int = 0
    steps: int = 600
    groups_per_batch: int = 8
    learning_rate: float = 1e-3
    warmup: int = 50
    problems: int = 2000
    samples: int = 8
    temperature: float = 1.0
    step_corruptions: int = 2
    answer_corruptions: int = 1
    pointwise_weight: float = 0.2
    dense_weight: float = 1.0
    data_start: int = POLICY_POOL_END
    eval_every: int = 100
    eval_problems: int = 256
    eval_samples: int = 8


def build_groups(problems, responses: list[list[str]], rng: np.random.Generator, cfg: RewardTrainingConfig) -> tuple[training.RewardGroups, dict]:
    """Policy samples + reference + corruptions per problem, as padded ``[G, K, T]`` arrays (and counts)."""
    rows, labels, tracks, starts = [], [], [], []
    for p, sampled in zip(problems, responses):
        reference = task.format_solution(p)
        candidates = list(sampled) + [reference]
        candidates += [corrupt.corrupt_solution(p, rng, "step") for _ in range(cfg.step_corruptions)]
        candidates += [corrupt.corrupt_solution(p, rng, "answer") for _ in range(cfg.answer_corruptions)]
        prompt = task.format_prompt(p)
        correct = [task.is_correct(p, r) for r in candidates]
        rows.append([encoding.reward_ids(prompt, r) for r in candidates])
        labels.append(correct)
        tracks.append([training.on_track_labels(r, reference, c) for r, c in zip(candidates, correct)])
        starts.append(len(encoding.prompt_ids(prompt)))
    k = len(rows[0])
    length = max(encoding.REWARD_LENGTH, max(len(r) for group in rows for r in group))
    ids, valid = encoding.pad_right([r for group in rows for r in group], length)
    on_track = np.zeros((len(rows), k, length), np.float32)
    dense = np.zeros((len(rows), k, length), bool)
    for g, (group, start) in enumerate(zip(tracks, starts)):
        for c, track in enumerate(group):
            on_track[g, c, start : start + len(track)] = track
            dense[g, c, start : start + len(track)] = True
    label = np.asarray(labels, np.float32)
    groups = training.RewardGroups(
        ids.reshape(len(rows), k, length), valid.reshape(len(rows), k, length), label, np.ones_like(label, bool),
        on_track, dense,
    )
    sampled = label[:, : cfg.samples]
    counts = {
        "groups": len(rows),
        "candidates_per_group": k,
        "sample_accuracy": float(sampled.mean()),
        "groups_with_both_labels": int(((sampled.max(1) > 0) & (sampled.min(1) < 1)).sum()),
    }
    return groups, counts


def evaluate_reward(reward_config, reward_params, problems, responses: list[list[str]]) -> dict:
    """AUC and best-of-n of the reward model on policy samples ``responses`` (problem-major) for ``problems``."""
    samples = len(responses[0])
    correct = evaluation.grade(problems, responses)
    prompts = [task.format_prompt(p) for p in problems for _ in range(samples)]
    scores = training.score_texts(reward_config, reward_params, prompts, [r for row in responses for r in row])
    scores = scores.reshape(len(problems), samples)
    return {
        "auc": evaluation.roc_auc(scores, correct),
        "within_problem_auc": evaluation.within_problem_auc(scores, correct),
        f"best_of_{samples}": evaluation.best_of_n_accuracy(scores, correct, samples),
        "sample_accuracy": float(correct.mean()),
        f"pass_at_{samples}": float(correct.any(1).mean()),
    }


def train_reward(policy_config, policy_params, cfg: RewardTrainingConfig, progress: bool = True):
    """Returns ``(reward_config, params, info)``: info has the data counts and the evaluation history."""
    key = jax.random.key(cfg.seed)
    sample_key, head_key, eval_key = jax.random.split(key, 3)
    rng = np.random.default_rng(cfg.seed)
    problems = task.problems("train", cfg.problems, start=cfg.data_start)
    start = time.perf_counter()
    responses = evaluation.generate(policy_config, policy_params, problems, sample_key, cfg.temperature, cfg.samples)
    groups, counts = build_groups(problems, responses, rng, cfg)
    counts["sampling_seconds"] = time.perf_counter() - start

    reward_config = training.reward_config(policy_config)
    params = training.reward_params_from_policy(policy_params, head_key)
    optimizer = training.make_optimizer(cfg.learning_rate, cfg.steps, cfg.warmup)
    opt_state = optimizer.init(params)
    val = task.problems("val", cfg.eval_problems)
    val_responses = evaluation.generate(policy_config, policy_params, val, eval_key, cfg.temperature, cfg.eval_samples)
    order, cursor = rng.permutation(len(problems)), 0
    history, losses = [], []
    bar = tqdm(range(1, cfg.steps + 1), desc="reward", disable=not progress)
    for step in bar:
        if cursor + cfg.groups_per_batch > len(order):
            order, cursor = rng.permutation(len(problems)), 0
        rows = order[cursor : cursor + cfg.groups_per_batch]
        cursor += cfg.groups_per_batch
        batch = training.RewardGroups(*(jnp.asarray(x[rows]) for x in groups))
        params, opt_state, loss, _ = training.reward_step(
            params, opt_state, reward_config, optimizer, batch, cfg.pointwise_weight, cfg.dense_weight
        )
        losses.append(loss)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            mean_loss = float(np.mean(jax.device_get(losses)))
            losses = []
            metrics = evaluate_reward(reward_config, params, val, val_responses)
            history.append({"step": step, "loss": mean_loss, **metrics, "seconds": time.perf_counter() - start})
            bar.set_postfix(
                loss=f"{mean_loss:.3f}", auc=f"{metrics['auc']:.3f}", auc_in=f"{metrics['within_problem_auc']:.3f}",
                best=f"{metrics[f'best_of_{cfg.eval_samples}']:.3f}",
            )
    return reward_config, params, {"data": counts, "history": history}
