"""A toy nabla-Reasoner on the tabular toy (TC4 (iii)): the practical algorithm, run as a negative control.

Per position ``p`` (Alg. 1 of the paper, with the official code's choices): refine the rollout's logits by
``num_dto_steps`` Adam steps on the DTO loss through the straight-through one-hot, with the code's clipped
cosine schedule ``lr * max(min_lr_ratio, (1 + cos(pi t / T)) / 2)`` and (by default) only position ``p``
moving; sample the token at ``p`` from ``softmax(z_p / resample_temperature)``; if it differs, roll out a new
continuation and keep it only if its reward is higher; stop revising after ``max_rollouts`` rollouts.
No selector (every position is optimised) and no top-k/top-p: the toy has 4 tokens.

Nothing here injects noise into the descent, and the acceptance test is greedy in the reward, so the
decoder is not expected to sample ``rho* ∝ pi exp(lambda r)``: TC4 measures how far it lands.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from experiments.theory import toy_models
from nabla_jax.dto.straight_through import straight_through_onehot


class ReasonerConfig(NamedTuple):
    reward_coeff: float
    num_dto_steps: int = 20
    learning_rate: float = 0.01
    min_lr_ratio: float = 0.1
    straight_through_temperature: float = 1.0
    rollout_temperature: float = 1.0
    resample_temperature: float = 0.5
    max_rollouts: int = 8
    update_all_positions: bool = False  # False: the code (first pending position); True: the paper's Alg. 2


class DecodeStats(NamedTuple):
    num_rollouts: jax.Array
    num_proposals: jax.Array  # resampled token differed from the rollout's
    num_accepted: jax.Array


def cosine_clipped_schedule(learning_rate: float, min_lr_ratio: float, num_steps: int) -> optax.Schedule:
    """The official code's schedule: cosine decay clipped at the floor, not rescaled onto it."""
    def schedule(count):
        return learning_rate * jnp.maximum(min_lr_ratio, 0.5 * (1.0 + jnp.cos(jnp.pi * count / num_steps)))

    return schedule


def rollout(policy: toy_models.ToyPolicy, tokens: jax.Array, start, key, temperature) -> jax.Array:
    """Keep ``tokens[:start]`` and sample the rest from the policy, one position at a time."""
    length, vocab = tokens.shape[0], policy.unembedding.shape[-1]

    def body(i, tokens):
        log_probs = toy_models.policy_log_probs(policy, jax.nn.one_hot(tokens, vocab, dtype=policy.bos.dtype))
        sampled = jax.random.categorical(jax.random.fold_in(key, i), log_probs[i] / temperature)
        return tokens.at[i].set(jnp.where(i >= start, sampled.astype(tokens.dtype), tokens[i]))

    return jax.lax.fori_loop(0, length, body, tokens)


def refine_logits(policy, reward_model, config: ReasonerConfig, tokens, position) -> jax.Array:
    """DTO: Adam on the logits of the pending positions, starting from the rollout's own logits."""
    length, vocab = tokens.shape[0], policy.unembedding.shape[-1]
    onehots = jax.nn.one_hot(tokens, vocab, dtype=policy.bos.dtype)
    committed = (jnp.arange(length) < position)[:, None]
    moving = (jnp.arange(length) >= position) if config.update_all_positions else (jnp.arange(length) == position)

    def loss(logits):
        relaxed = straight_through_onehot(logits, config.straight_through_temperature)
        y = jnp.where(committed, onehots, relaxed)
        return toy_models.dto_loss(policy, reward_model, config.reward_coeff, y)

    optimiser = optax.adam(cosine_clipped_schedule(config.learning_rate, config.min_lr_ratio, config.num_dto_steps))
    logits = toy_models.policy_log_probs(policy, onehots)

    def body(_, carry):
        logits, opt_state = carry
        grad = jax.grad(loss)(logits) * moving[:, None]
        updates, opt_state = optimiser.update(grad, opt_state, logits)
        return optax.apply_updates(logits, updates), opt_state

    logits, _ = jax.lax.fori_loop(0, config.num_dto_steps, body, (logits, optimiser.init(logits)))
    return logits


def decode(policy, reward_model, config: ReasonerConfig, key, length: int) -> tuple[jax.Array, DecodeStats]:
    """One decode from an empty prompt; returns the committed tokens and counters."""
    score = lambda tokens: toy_models.reward(  # noqa: E731
        reward_model, jax.nn.one_hot(tokens, policy.unembedding.shape[-1], dtype=policy.bos.dtype))
    tokens = rollout(policy, jnp.zeros(length, jnp.int32), 0, jax.random.fold_in(key, 0), config.rollout_temperature)
    zero = jnp.zeros((), jnp.int32)

    def position_step(position, carry):
        tokens, stats = carry
        step_key = jax.random.fold_in(key, position + 1)
        logits = refine_logits(policy, reward_model, config, tokens, position)
        proposed = jax.random.categorical(jax.random.fold_in(step_key, 0),
                                          logits[position] / config.resample_temperature)
        revise = (proposed != tokens[position]) & (stats.num_rollouts < config.max_rollouts)
        candidate = rollout(policy, tokens.at[position].set(proposed.astype(tokens.dtype)), position + 1,
                            jax.random.fold_in(step_key, 1), config.rollout_temperature)
        accept = revise & (score(candidate) > score(tokens))
        stats = DecodeStats(stats.num_rollouts + revise, stats.num_proposals + revise, stats.num_accepted + accept)
        return jnp.where(accept, candidate, tokens), stats

    return jax.lax.fori_loop(0, length, position_step, (tokens, DecodeStats(zero + 1, zero, zero)))
