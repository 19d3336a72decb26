"""Token-selection probes at the rollout.

:func:`selection_probes`: one forward/backward through both models gives ``||dL/dy_i||_2`` per ahead position at the
rollout's one-hots (the official gradient selector, taken with respect to y, not z); positions at or past
``ahead_len`` read 0. The gradient itself is returned too: it is the first full step's ``dL/dy`` of a DTO run started
from the same variables. :func:`token_confidence`: the top probability and entropy of the ahead logits.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.dto.config import DTOConfig
from nabla_jax.dto.loss import loss_and_onehot_grad
from nabla_jax.dto.models import ModelPair
from nabla_jax.dto.prefix_cache import PrefixCache
from nabla_jax.dto.problem import DTOProblem
from nabla_jax.dto.variables import check_init_shape, to_logits
from nabla_jax.generation.sampling import first_argmax


class Probes(NamedTuple):
    grad_norm: jax.Array  # [A], ||dL/dy_i||_2
    loss: jax.Array  # () the loss at the rollout's one-hots
    grad_y: jax.Array  # [A, V] dL/dy at the rollout's one-hots (zero rows past ahead_len)
    loglik: jax.Array  # () the loss's log-likelihood part
    reward: jax.Array  # () its raw reward


def selection_probes(
    models: ModelPair,
    config: DTOConfig,
    problem: DTOProblem,
    cache: PrefixCache | None,
    init: jax.Array,
    size: int | None = None,
) -> Probes:
    """Probes for every ahead position from the init variables ``[A, V]`` or ``[A, d]`` (per ``config.embedder``),
    over the first ``size`` ahead slots when given (see :func:`loss_and_onehot_grad`)."""
    check_init_shape(models, config, init.shape)
    logits = to_logits(models, config, init)
    y = jax.nn.one_hot(first_argmax(logits), logits.shape[-1], dtype=jnp.float32)
    loss, parts, grad = loss_and_onehot_grad(models, config, problem, cache, y, size)
    real = jnp.arange(init.shape[0]) < problem.ahead_len
    return Probes(
        grad_norm=jnp.where(real, jnp.linalg.norm(grad, axis=-1), 0.0),
        loss=loss,
        grad_y=grad,
        loglik=parts.loglik,
        reward=parts.reward,
    )


def token_confidence(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(top probability, entropy in nats)`` of ``softmax(logits [..., V])`` per row: the official confidence test
    and the paper's entropy test. The top probability is ``1 / sum(exp(logits - max))``, one reduction, where
    ``max(softmax)`` would exponentiate the row once more."""
    shifted = logits - jnp.max(logits, axis=-1, keepdims=True)
    log_total = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))
    logp = shifted - log_total[..., None]
    return jnp.exp(-log_total), -jnp.sum(jnp.exp(logp) * logp, axis=-1)

