"""A tiny policy and reward model on relaxed one-hots (TC4, TC6), and the DTO loss of Eq. 2 over them.

The policy embeds the one-hots (``y_i^T E``), prepends a BOS vector, runs one causal single-head attention layer
and reads out next-token log-probabilities; the reward model is a small MLP on the embedded sequence. Both take
points of the simplex, so ``dL/dy`` at a one-hot corner is the same quantity DTO and the gradient selector use.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.theory.compilation import jit


class ToyPolicy(NamedTuple):
    embedding: jax.Array  # (V, D)
    bos: jax.Array  # (D,)
    positions: jax.Array  # (T, D)
    query: jax.Array  # (D, D)
    key: jax.Array  # (D, D)
    value: jax.Array  # (D, D)
    unembedding: jax.Array  # (D, V)


class ToyReward(NamedTuple):
    embedding: jax.Array  # (V, D)
    hidden: jax.Array  # (T * D, H)
    output: jax.Array  # (H,)


def init_models(seed: int, vocab: int, length: int, dim: int = 8, hidden: int = 16, logit_scale: float = 1.0,
                dtype=None) -> tuple[ToyPolicy, ToyReward]:
    """Random models (NumPy-built). ``logit_scale`` sets how peaked the policy is."""
    rng = np.random.default_rng(seed)
    dtype = jnp.result_type(float) if dtype is None else dtype

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape), dtype)

    policy = ToyPolicy(
        embedding=normal(vocab, dim), bos=normal(dim), positions=normal(length, dim, scale=0.5),
        query=normal(dim, dim, scale=dim**-0.5), key=normal(dim, dim, scale=dim**-0.5),
        value=normal(dim, dim, scale=dim**-0.5), unembedding=normal(dim, vocab, scale=logit_scale * dim**-0.5),
    )
    reward = ToyReward(embedding=normal(vocab, dim), hidden=normal(length * dim, hidden, scale=(length * dim) ** -0.5),
                       output=normal(hidden, scale=hidden**-0.5))
    return policy, reward


def policy_log_probs(policy: ToyPolicy, y: jax.Array) -> jax.Array:
    """``log pi(. | y_<i)`` for every position ``i``, shape ``(T, V)``; ``y`` is ``(T, V)`` on the simplex."""
    inputs = jnp.concatenate([policy.bos[None], y[:-1] @ policy.embedding]) + policy.positions
    q, k, v = inputs @ policy.query, inputs @ policy.key, inputs @ policy.value
    length = y.shape[0]
    scores = jnp.where(jnp.tril(jnp.ones((length, length), bool)), q @ k.T / jnp.sqrt(q.shape[-1]), -jnp.inf)
    hidden = inputs + jax.nn.softmax(scores, axis=-1) @ v
    return jax.nn.log_softmax(jnp.tanh(hidden) @ policy.unembedding, axis=-1)


def reward(model: ToyReward, y: jax.Array) -> jax.Array:
    embedded = (y @ model.embedding).reshape(-1)
    return jnp.tanh(embedded @ model.hidden) @ model.output


def dto_loss(policy: ToyPolicy, reward_model: ToyReward, reward_coeff, y: jax.Array,
             detach_context: bool = False) -> jax.Array:
    """Eq. 2 on relaxed one-hots: ``-lambda r(y) - sum_i y_i^T log pi(. | y_<i)``.

    ``detach_context`` stops the gradient through the policy's *input* (the context ``y_<i``), which removes
    exactly the future-to-past term delta_postfix of Prop. C.1 and keeps delta_prefix and the reward term.
    """
    context = jax.lax.stop_gradient(y) if detach_context else y
    log_probs = policy_log_probs(policy, context)
    return -reward_coeff * reward(reward_model, y) - jnp.sum(y * log_probs)


def all_sequences(vocab: int, length: int) -> jax.Array:
    """Every sequence as tokens, ``(V^T, T)``, in row-major order (sequence ``j`` is ``j`` written in base V)."""
    return jnp.asarray(np.stack(np.unravel_index(np.arange(vocab**length), (vocab,) * length), axis=-1))


class CornerTable(NamedTuple):
    """Exact quantities at every one-hot corner, indexed like ``all_sequences``."""

    loss: jax.Array  # (V^T,)
    grad: jax.Array  # (V^T, T, V): dL/dy at the corner
    log_policy: jax.Array  # (V^T,): log pi(y)
    reward: jax.Array  # (V^T,)


@jit(static_argnames=("vocab", "length"))
def corner_table(policy: ToyPolicy, reward_model: ToyReward, reward_coeff, vocab: int, length: int) -> CornerTable:
    onehots = jax.nn.one_hot(all_sequences(vocab, length), vocab, dtype=policy.embedding.dtype)
    loss, grad = jax.vmap(jax.value_and_grad(partial(dto_loss, policy, reward_model, reward_coeff)))(onehots)
    log_policy = jax.vmap(lambda y: jnp.sum(y * policy_log_probs(policy, y)))(onehots)
    return CornerTable(loss, grad, log_policy, jax.vmap(partial(reward, reward_model))(onehots))


def sequence_index(tokens: jax.Array, vocab: int) -> jax.Array:
    """Row-major index of a sequence of tokens (inverse of ``all_sequences``)."""
    length = tokens.shape[-1]
    return jnp.sum(tokens * vocab ** jnp.arange(length - 1, -1, -1), axis=-1)
