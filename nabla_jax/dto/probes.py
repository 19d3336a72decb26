"""Token-selection probes at the rollout, from one forward/backward through both models.

Per ahead position: the top probability and the entropy of ``softmax(logits)`` (the official confidence test and
the paper's entropy test), and ``||dL/dy_i||_2`` at the rollout's one-hots (the official gradient selector, taken
with respect to y, not z). Positions at or past ``ahead_len`` read 0. The gradient itself is returned too: it is the
first full step's ``dL/dy`` of a DTO run started from the same variables.
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


class Probes(NamedTuple):
    top_prob: jax.Array  # [A]
    entropy: jax.Array  # [A], nats
    grad_norm: jax.Array  # [A], ||dL/dy_i||_2
    loss: jax.Array  # () the loss at the rollout's one-hots
    grad_y: jax.Array  # [A, V] dL/dy at the rollout's one-hots (zero rows past ahead_len)
    loglik: jax.Array  # () the loss's log-likelihood part
    reward: jax.Array  # () its raw reward


def selection_probes(
    models: ModelPair, config: DTOConfig, problem: DTOProblem, cache: PrefixCache | None, init: jax.Array
) -> Probes:
    """Probes for every ahead position from the init variables ``[A, V]`` or ``[A, d]`` (per ``config.embedder``)."""
    check_init_shape(models, config, init.shape)
    logits = to_logits(models, config, init)
    logp = jax.nn.log_softmax(logits, axis=-1)
    probs = jnp.exp(logp)
    y = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=jnp.float32)
    loss, parts, grad = loss_and_onehot_grad(models, config, problem, cache, y)
    real = jnp.arange(init.shape[0]) < problem.ahead_len
    return Probes(
        top_prob=jnp.where(real, jnp.max(probs, axis=-1), 0.0),
        entropy=jnp.where(real, -jnp.sum(probs * logp, axis=-1), 0.0),
        grad_norm=jnp.where(real, jnp.linalg.norm(grad, axis=-1), 0.0),
        loss=loss,
        grad_y=grad,
        loglik=parts.loglik,
        reward=parts.reward,
    )
