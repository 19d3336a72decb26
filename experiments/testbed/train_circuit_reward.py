"""Train the testbed's outcome reward model or its process reward model from the wired verifier circuit.

    python -m experiments.testbed.train_circuit_reward --kind outcome --seed 0 --out nabla_jax/testbed/models/outcome
    python -m experiments.testbed.train_circuit_reward --kind process --seed 0 --out nabla_jax/testbed/models/prm

- ``outcome``: a Qwen2ForSequenceClassification with one label, read at the last real token (as Skywork-Reward-V2);
- ``process``: a Qwen2ForProcessRewardModel (the Qwen2.5-Math-PRM head), read at each line's end and at the
  response's end-of-turn token; its reading options (no separator, one step a line, ``min``) are stored in its
  ``config.json`` and used as the defaults wherever it is loaded.

The start is :mod:`experiments.testbed.verifier_circuit` (the verifier's trunk with the digit check wired in).
Training then runs on the policy's own samples of **train-split problems past the policy's own range**, labelled
exactly: at every response token, whether the response so far is a prefix of the reference solution (the
testbed's solutions are unique); at the outcome model's last token the grader's verdict, plus Bradley-Terry over
each problem's (correct, incorrect) pairs; at the PRM's step ends the exact step labels. Candidates per problem:
the reference, corruptions shaped like the policy's mistakes and the pooled samples. ``training.json`` records
the settings and the ranking on validation samples before and after training.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from convert.hf import load_hf_params, save_hf_params
from experiments.testbed import corrupt, encoding, evaluation, training, verifier_circuit
from experiments.testbed.process_labels import PRMBatch, encode_candidates, evaluate_prm, prefix_labels, step_logits
from experiments.testbed.recipes.reward import POLICY_POOL_END
from experiments.testbed.recipes.script_args import add_settings_arguments, settings_from_args
from nabla_jax.models import decoder
from nabla_jax.models.config import PROCESS_REWARD, SEQUENCE_CLASSIFICATION
from nabla_jax.testbed import POLICY_DIR, VERIFIER_DIR, task

KINDS = {"outcome": SEQUENCE_CLASSIFICATION, "process": PROCESS_REWARD}
CORRUPTIONS = ("slip", "slip", "digit", "copy", "answer")
PRM_READING = {"separator": None, "step_split": "\n", "aggregate": "min"}


@dataclasses.dataclass(frozen=True)
class CircuitTrainingConfig:
    seed: int = 0
    steps: int = 400
    groups_per_batch: int = 8
    learning_rate: float = 3e-4
    warmup: int = 50
    problems: int = 3000
    samples: int = 4
    temperature: float = 1.0
    data_start: int = POLICY_POOL_END
    dense_weight: float = 1.0
    final_weight: float = 1.0
    ranking_weight: float = 0.5
    eval_problems: int = 256
    eval_samples: int = 8


class OutcomeBatch(NamedTuple):
    ids: np.ndarray  # [G*K, T] reward-template ids, right-padded
    valid: np.ndarray  # [G*K, T]
    label: np.ndarray  # [G*K, T] float32: prefix-correct at response tokens, the grader's verdict at the last token
    dense: np.ndarray  # [G*K, T] the response tokens and their end-of-turn token (the dense term's slots)
    correct: np.ndarray  # [G, K] float32, the grader's verdict


def encode_outcome(problems, candidates: list[list[str]], length: int = encoding.REWARD_LENGTH) -> OutcomeBatch:
    rows, labels, denses, correct = [], [], [], []
    for p, texts in zip(problems, candidates):
        prompt = task.format_prompt(p)
        start, reference = len(encoding.prompt_ids(prompt)), task.format_solution(p)
        verdicts = []
        for text in texts:
            ids = encoding.reward_ids(prompt, text)
            label, dense = np.zeros(len(ids), np.float32), np.zeros(len(ids), bool)
            label[start : start + len(text)] = prefix_labels(p, text)
            label[start + len(text)] = float(text == reference)  # the end-of-turn token: the whole text is right
            dense[start : start + len(text) + 1] = True
            verdicts.append(float(task.is_correct(p, text)))
            label[len(ids) - 1] = verdicts[-1]
            rows.append(ids)
            labels.append(label)
            denses.append(dense)
        correct.append(verdicts)
    ids, valid = encoding.pad_right(rows, max(length, max(len(r) for r in rows)))
    label, dense = np.zeros(ids.shape, np.float32), np.zeros(ids.shape, bool)
    for i, (lab, d) in enumerate(zip(labels, denses)):
        label[i, : len(lab)], dense[i, : len(d)] = lab, d
    return OutcomeBatch(ids, valid, label, dense, np.asarray(correct, np.float32))


def _bce(z, y):
    return -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))


def _masked_mean(values, mask):
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask) / jnp.maximum(mask.sum(), 1.0)


def outcome_loss(params, config, batch: OutcomeBatch, weights):
    dense_weight, final_weight, ranking_weight = weights
    hidden = training._hidden(config, params, batch.ids, batch.valid)
    z = jnp.dot(hidden, params["score"]["kernel"], preferred_element_type=jnp.float32)[..., 0]
    nll = _bce(z, batch.label)
    last = decoder.last_valid_index(batch.valid)[:, None]
    final_z, final_nll = (jnp.take_along_axis(x, last, axis=1)[:, 0] for x in (z, nll))
    scores = final_z.reshape(batch.correct.shape)
    pairs = batch.correct[:, :, None] > batch.correct[:, None, :]
    ranking = _masked_mean(-jax.nn.log_sigmoid(scores[:, :, None] - scores[:, None, :]), pairs)
    dense = _masked_mean(nll, batch.dense)
    return dense_weight * dense + final_weight * jnp.mean(final_nll) + ranking_weight * ranking, dense


def process_loss(params, config, batch: PRMBatch, weights):
    dense_weight = weights[0]
    hidden = training._hidden(config, params, batch.ids, batch.valid)
    nll = _bce(step_logits(params, hidden), batch.label)
    steps = _masked_mean(nll, batch.read)
    return steps + dense_weight * _masked_mean(nll, batch.dense), steps


@functools.partial(jax.jit, static_argnames=("config", "optimizer", "weights"), donate_argnums=(0, 1))
def train_step(params, opt_state, config, optimizer, batch, weights):
    loss = process_loss if config.kind == PROCESS_REWARD else outcome_loss
    (_, part), grads = jax.value_and_grad(loss, has_aux=True)(params, config, batch, weights)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, part


def make_optimizer(cfg: CircuitTrainingConfig, params: dict, trained_from_layer: int):
    """AdamW (no weight decay) on the read-out only: the last layer, the final norm and the head. The check below it
    is left exactly as wired: its identity dims are 1e-3 wide and its gates 400 deep, so even Adam's first steps
    (about the learning rate per weight) on them undo it (measured: within-problem AUC 0.94 -> 0.49 in 6 steps)."""
    train = training.make_optimizer(cfg.learning_rate, cfg.steps, cfg.warmup, weight_decay=0.0)
    labels = {k: jax.tree_util.tree_map(lambda _: "train" if k in ("score", "final_norm") else "frozen", v)
              for k, v in params.items()}
    labels["layers"] = jax.tree_util.tree_map(lambda _: "layers", params["layers"])
    mask = lambda x: jnp.arange(x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1)) >= trained_from_layer  # noqa: E731
    layers = optax.chain(train, optax.stateless(lambda updates, _: jax.tree_util.tree_map(lambda u: u * mask(u), updates)))
    return optax.multi_transform({"train": train, "layers": layers, "frozen": optax.set_to_zero()}, labels)


def evaluate(config, params, problems, responses) -> dict:
    """Ranking of validation samples: AUC, within-problem AUC, best-of-k (the PRM aggregated by ``min``, with its
    step accuracy against the exact labels)."""
    if config.kind == PROCESS_REWARD:
        metrics = evaluate_prm(config, params, problems, responses)
        return {**metrics["min"], "step_accuracy": metrics["step_accuracy"], "step_auc": metrics["step_auc"]}
    samples = len(responses[0])
    correct = evaluation.grade(problems, responses)
    prompts = [task.format_prompt(p) for p in problems for _ in range(samples)]
    scores = training.score_texts(config, params, prompts, [r for row in responses for r in row])
    scores = scores.reshape(len(problems), samples)
    return {"auc": evaluation.roc_auc(scores, correct), "within_problem_auc": evaluation.within_problem_auc(scores, correct),
            f"best_of_{samples}": evaluation.best_of_n_accuracy(scores, correct, samples)}


def batch_for(kind: str, problems, sampled, rng):
    candidates = [[task.format_solution(p)] + [corrupt.corrupt_solution(p, rng, k) for k in CORRUPTIONS] + list(s)
                  for p, s in zip(problems, sampled)]
    if kind == PROCESS_REWARD:
        return PRMBatch(*map(jnp.asarray, encode_candidates(problems, candidates)))
    return OutcomeBatch(*map(jnp.asarray, encode_outcome(problems, candidates)))


def train_circuit_reward(kind: str, lm_config, lm_params, policy_config, policy_params, cfg: CircuitTrainingConfig,
                         progress: bool = True):
    """Returns ``(config, params, info)``."""
    sample_key, eval_key = jax.random.split(jax.random.key(cfg.seed))
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    problems = task.problems("train", cfg.problems, start=cfg.data_start)
    responses = evaluation.generate(policy_config, policy_params, problems, sample_key, cfg.temperature, cfg.samples)
    val = task.problems("val", cfg.eval_problems)
    val_responses = evaluation.generate(policy_config, policy_params, val, eval_key, cfg.temperature, cfg.eval_samples)
    data = {"pool_problems": len(problems), "pool_samples": cfg.samples, "candidates_per_group": 1 + len(CORRUPTIONS) + cfg.samples,
            "pool_sample_accuracy": float(evaluation.grade(problems, responses).mean()), "sampling_seconds": time.perf_counter() - start}
    config, params = verifier_circuit.circuit_params(lm_config, jax.device_get(lm_params), kind)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    before = evaluate(config, params, val, val_responses)
    optimizer = make_optimizer(cfg, params, config.num_layers - 1)
    opt_state = optimizer.init(params)
    weights = (cfg.dense_weight, cfg.final_weight, cfg.ranking_weight)
    order, cursor, parts = rng.permutation(len(problems)), 0, []
    for _ in tqdm(range(cfg.steps), desc=f"{kind} reward", disable=not progress):
        if cursor + cfg.groups_per_batch > len(order):
            order, cursor = rng.permutation(len(problems)), 0
        rows = order[cursor : cursor + cfg.groups_per_batch]
        cursor += cfg.groups_per_batch
        chosen = [problems[i] for i in rows]
        batch = batch_for(config.kind, chosen, [responses[i] for i in rows], rng)
        params, opt_state, part = train_step(params, opt_state, config, optimizer, batch, weights)
        parts.append(part)
    parts = np.asarray(jax.device_get(parts))
    after = evaluate(config, params, val, val_responses)
    info = {"data": data, "validation_before_training": before, "validation_after_training": after,
            "loss_first_50": float(parts[:50].mean()), "loss_last_50": float(parts[-50:].mean())}
    return config, jax.device_get(params), info


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    add_settings_arguments(parser, CircuitTrainingConfig)
    parser.add_argument("--verifier", default=VERIFIER_DIR, help="the causal LM whose trunk the model starts from")
    parser.add_argument("--policy", default=POLICY_DIR, help="the policy whose samples train the model")
    parser.add_argument("--out", required=True, help="an empty or missing directory")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    cfg = settings_from_args(CircuitTrainingConfig, args)
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out} is not empty; refusing to overwrite it")
    lm_config, lm_params = load_hf_params(args.verifier)
    policy_config, policy_params = load_hf_params(args.policy)
    start, cpu_start = time.perf_counter(), time.process_time()
    config, params, info = train_circuit_reward(KINDS[args.kind], lm_config, lm_params, policy_config, policy_params, cfg,
                                                progress=not args.quiet)
    info = {"settings": dataclasses.asdict(cfg), "kind": args.kind, "start": "experiments/testbed/verifier_circuit.py",
            "verifier": os.path.relpath(args.verifier), "policy": os.path.relpath(args.policy),
            "train_seconds": time.perf_counter() - start, "train_cpu_seconds": time.process_time() - cpu_start, **info}
    save_hf_params(config, params, args.out, tokenizer=encoding.tokenizer())
    if args.kind == "process":
        path = os.path.join(args.out, "config.json")
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
        raw["nabla_jax_reward_options"] = dict(PRM_READING)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(raw, handle, indent=2)
    with open(os.path.join(args.out, "training.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
    if not args.quiet:
        print(json.dumps({k: info[k] for k in ("validation_before_training", "validation_after_training")}, indent=1))
    return info


if __name__ == "__main__":
    main()
