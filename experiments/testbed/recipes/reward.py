"""Training of the testbed reward model: a verifier distilled from a stronger language model, then checked for
ranking on the policy's own samples.

Why distillation. The policy was stopped early on purpose (about 45% greedy accuracy); a verifier of the same
size trained only on correct/incorrect labels learned to rank the policy's samples barely better than chance in
the time we could give it, because it has to learn the arithmetic *and* to pool a mistake found mid-response into
the last token. A stronger language model already knows the arithmetic: the same policy trained further on
reference solutions (the "teacher", ``teacher_steps`` more steps) solves nearly every test problem, and the mean of
its clipped token log-probabilities over a response ranks the policy's samples well. The reward model is then:

1. a copy of the teacher's backbone plus ``extra_layers`` new layers and a scalar head (LlamaForSequenceClassification);
2. trained on groups of candidates per problem: the reference solution, fresh corruptions shaped like the
   policy's mistakes (:mod:`corrupt`) and the policy's own samples (drawn once, at temperature 1, into a pool);
3. with :func:`training.reward_loss`: regress the running mean of the teacher's clipped token log-probs at every
   position (the last position's is the sequence score), two auxiliary terms that teach the checking circuit,
   and Bradley–Terry ranking on the exact labels.

Only the reward model is exported; the teacher is an intermediate of this script (``--teacher-out`` keeps it).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from experiments.testbed import corrupt, encoding, evaluation, training
from nabla_jax.testbed import task

POLICY_POOL_END = 100_000  # the policy trains on train problems [0, this); the reward data starts past it
CORRUPTION_MIX = ("slip", "slip", "digit", "copy", "answer")


@dataclasses.dataclass(frozen=True)
class RewardTrainingConfig:
    seed: int = 0
    # the teacher: the policy trained further on reference solutions
    teacher_steps: int = 3000
    teacher_batch: int = 32
    teacher_learning_rate: float = 2e-3
    # the reward model
    steps: int = 2500
    groups_per_batch: int = 8
    learning_rate: float = 3e-3
    warmup: int = 100
    extra_layers: int = 2
    clip: float = -6.0
    mean_weight: float = 1.0
    token_weight: float = 0.1
    carried_weight: float = 0.5
    ranking_weight: float = 0.5
    problems: int = 4000
    samples: int = 2
    temperature: float = 1.0
    data_start: int = POLICY_POOL_END
    eval_every: int = 250
    eval_problems: int = 256
    eval_samples: int = 8


def candidates_per_group(cfg: RewardTrainingConfig) -> int:
    return 1 + len(CORRUPTION_MIX) + cfg.samples


def encode_groups(problems, candidates: list[list[str]]) -> training.RewardGroups:
    """Each problem's candidate responses (graded exactly) as padded ``[G, K, T]`` arrays."""
    rows, labels, spans = [], [], []
    for p, texts in zip(problems, candidates):
        prompt = task.format_prompt(p)
        start = len(encoding.prompt_ids(prompt))
        rows.append([encoding.reward_ids(prompt, r) for r in texts])
        labels.append([task.is_correct(p, r) for r in texts])
        spans.append([(start, start + len(r) + 1) for r in texts])  # the response and its <|im_end|>
    k = len(rows[0])
    ids, valid = encoding.pad_right([r for group in rows for r in group], encoding.REWARD_LENGTH)
    length = ids.shape[1]
    response = np.zeros((len(rows), k, length), bool)
    for g, group in enumerate(spans):
        for c, (first, end) in enumerate(group):
            response[g, c, first:end] = True
    label = np.asarray(labels, np.float32)
    return training.RewardGroups(ids.reshape(len(rows), k, length), valid.reshape(len(rows), k, length), label, response)


def build_groups(problems, responses: list[list[str]], rng: np.random.Generator) -> training.RewardGroups:
    """Reference + fresh corruptions + the pooled policy samples per problem."""
    candidates = [
        [task.format_solution(p)] + [corrupt.corrupt_solution(p, rng, kind) for kind in CORRUPTION_MIX] + list(sampled)
        for p, sampled in zip(problems, responses)
    ]
    return encode_groups(problems, candidates)


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


def train_teacher(policy_config, policy_params, cfg: RewardTrainingConfig, rng: np.random.Generator, progress: bool = True):
    """The policy trained ``teacher_steps`` more steps on reference solutions; returns ``(params, info)``."""
    params = jax.tree_util.tree_map(jnp.copy, policy_params)
    optimizer = training.make_optimizer(cfg.teacher_learning_rate, cfg.teacher_steps, min(50, cfg.teacher_steps))
    opt_state = optimizer.init(params)
    losses = []
    for _ in tqdm(range(cfg.teacher_steps), desc="teacher", disable=not progress):
        chosen = [task.problem("train", int(i)) for i in rng.integers(0, cfg.data_start, cfg.teacher_batch)]
        batch = training.policy_examples(chosen)
        params, opt_state, loss = training.policy_step(
            params, opt_state, policy_config, optimizer, jnp.asarray(batch.ids), jnp.asarray(batch.valid), jnp.asarray(batch.target)
        )
        losses.append(loss)
    val = task.problems("val", cfg.eval_problems)
    info = {
        "final_loss": float(np.mean(jax.device_get(losses[-50:]))) if losses else None,
        "val_greedy_accuracy": evaluation.greedy_accuracy(policy_config, params, val),
    }
    return params, info


def teacher_ranking(teacher_config, teacher_params, problems, responses, clip: float) -> dict:
    """How well the teacher's mean clipped token log-prob ranks ``responses`` (the distillation target's quality)."""
    samples = len(responses[0])
    groups = encode_groups(problems, responses)
    ids = groups.ids.reshape(-1, groups.ids.shape[-1])
    valid, response = groups.valid.reshape(ids.shape), groups.response.reshape(ids.shape)
    _, running, _ = jax.jit(training.teacher_targets, static_argnums=(0, 5))(
        teacher_config, teacher_params, jnp.asarray(ids), jnp.asarray(valid), jnp.asarray(response), clip
    )
    last = valid.sum(1) - 1
    scores = np.asarray(running)[np.arange(len(ids)), last].reshape(len(problems), samples)
    correct = groups.label > 0
    return {
        "auc": evaluation.roc_auc(scores, correct),
        "within_problem_auc": evaluation.within_problem_auc(scores, correct),
        f"best_of_{samples}": evaluation.best_of_n_accuracy(scores, correct, samples),
    }


def train_reward(policy_config, policy_params, cfg: RewardTrainingConfig, progress: bool = True):
    """Returns ``(reward_config, params, info, teacher_params)``: info has the data counts, the teacher's quality
    and the evaluation history."""
    key = jax.random.key(cfg.seed)
    sample_key, init_key, eval_key = jax.random.split(key, 3)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    teacher_params, teacher_info = train_teacher(policy_config, policy_params, cfg, rng, progress)
    teacher_info["seconds"] = time.perf_counter() - start

    problems = task.problems("train", cfg.problems, start=cfg.data_start)
    responses = evaluation.generate(policy_config, policy_params, problems, sample_key, cfg.temperature, cfg.samples)
    val = task.problems("val", cfg.eval_problems)
    val_responses = evaluation.generate(policy_config, policy_params, val, eval_key, cfg.temperature, cfg.eval_samples)
    teacher_info["ranking_on_val_samples"] = teacher_ranking(policy_config, teacher_params, val, val_responses, cfg.clip)
    counts = {
        "pool_problems": len(problems),
        "pool_samples": cfg.samples,
        "candidates_per_group": candidates_per_group(cfg),
        "pool_sample_accuracy": float(evaluation.grade(problems, responses).mean()),
    }

    reward_config = training.reward_config(policy_config, cfg.extra_layers)
    params = training.reward_params_from_policy(policy_config, teacher_params, init_key, cfg.extra_layers)
    optimizer = training.make_optimizer(cfg.learning_rate, cfg.steps, cfg.warmup)
    opt_state = optimizer.init(params)
    weights = {"mean": cfg.mean_weight, "token": cfg.token_weight, "carried": cfg.carried_weight, "ranking": cfg.ranking_weight}
    order, cursor = rng.permutation(len(problems)), 0
    history, parts_seen = [], []
    bar = tqdm(range(1, cfg.steps + 1), desc="reward", disable=not progress)
    for step in bar:
        if cursor + cfg.groups_per_batch > len(order):
            order, cursor = rng.permutation(len(problems)), 0
        rows = order[cursor : cursor + cfg.groups_per_batch]
        cursor += cfg.groups_per_batch
        groups = build_groups([problems[i] for i in rows], [responses[i] for i in rows], rng)
        batch = training.RewardGroups(*(jnp.asarray(x) for x in groups))
        params, opt_state, _, parts = training.reward_step(
            params, opt_state, reward_config, optimizer, policy_config, teacher_params, cfg.clip, batch, weights
        )
        parts_seen.append(parts)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            means = {k: float(np.mean([p[k] for p in jax.device_get(parts_seen)])) for k in parts_seen[0]}
            parts_seen = []
            metrics = evaluate_reward(reward_config, training.export_reward_params(params), val, val_responses)
            history.append({"step": step, **means, **metrics, "seconds": time.perf_counter() - start})
            bar.set_postfix(
                mean=f"{means['mean']:.4f}", auc_in=f"{metrics['within_problem_auc']:.3f}",
                best=f"{metrics[f'best_of_{cfg.eval_samples}']:.3f}",
            )
    info = {"data": counts, "teacher": teacher_info, "history": history}
    return reward_config, training.export_reward_params(params), info, teacher_params
