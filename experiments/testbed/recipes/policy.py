"""Supervised training of the testbed policy, stopped early inside the target accuracy band.

A policy trained to near-zero loss has saturated softmaxes and gives DTO no gradient, so training stops at the
first evaluation whose greedy accuracy on validation problems (never the test split) reaches ``target_accuracy``.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from experiments.testbed import evaluation, training
from nabla_jax.models import decoder
from nabla_jax.testbed import task


@dataclasses.dataclass(frozen=True)
class PolicyTrainingConfig:
    seed: int = 0
    steps: int = 3000  # the most steps; training usually stops earlier at the target accuracy
    batch_size: int = 32
    learning_rate: float = 5e-3
    warmup: int = 100
    hidden: int = 64
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    mlp: int = 192
    train_problems: int = 100_000
    eval_every: int = 100
    eval_problems: int = 256
    target_accuracy: float = 0.45  # stop at the first evaluation at or above this (1.0: never stop early)


def train_policy(cfg: PolicyTrainingConfig, progress: bool = True):
    """Returns ``(model_config, params, history)``; history is a list of dicts (step, loss, val accuracy)."""
    model_config = training.policy_config(cfg.hidden, cfg.layers, cfg.heads, cfg.kv_heads, cfg.mlp)
    params = decoder.init_params(model_config, jax.random.key(cfg.seed))
    optimizer = training.make_optimizer(cfg.learning_rate, cfg.steps, cfg.warmup)
    opt_state = optimizer.init(params)
    pool = task.problems("train", cfg.train_problems)
    examples = training.policy_examples(pool)
    val = task.problems("val", cfg.eval_problems)
    rng = np.random.default_rng(cfg.seed)
    order, cursor = rng.permutation(len(pool)), 0
    history, losses = [], []
    bar = tqdm(range(1, cfg.steps + 1), desc="policy", disable=not progress)
    start = time.perf_counter()
    for step in bar:
        if cursor + cfg.batch_size > len(order):
            order, cursor = rng.permutation(len(pool)), 0
        rows = order[cursor : cursor + cfg.batch_size]
        cursor += cfg.batch_size
        params, opt_state, loss = training.policy_step(
            params, opt_state, model_config, optimizer,
            jnp.asarray(examples.ids[rows]), jnp.asarray(examples.valid[rows]), jnp.asarray(examples.target[rows]),
        )
        losses.append(loss)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            mean_loss = float(np.mean(jax.device_get(losses)))
            losses = []
            accuracy = evaluation.greedy_accuracy(model_config, params, val)
            history.append({"step": step, "loss": mean_loss, "val_accuracy": accuracy, "seconds": time.perf_counter() - start})
            bar.set_postfix(loss=f"{mean_loss:.3f}", val_acc=f"{accuracy:.3f}")
            if accuracy >= cfg.target_accuracy:
                break
    return model_config, params, history
