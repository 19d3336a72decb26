"""The DTO loss as a function of the (straight-through) one-hots of the ahead tokens.

    L(y) = -(nll_coeff * sum_{i < ahead_len} sum_v y_iv * log_softmax(LM(prefix + y E))_iv + reward_coeff * r(y))

r is the reward model's raw scalar score (no sigmoid) of its template around the prompt, the committed tokens, the
soft ahead tokens ``y @ E_rm_aligned`` and the closing tokens. With the official defaults (nll_coeff 1e-3,
reward_coeff 1.0) this is the paper's ``-lambda r - log pi`` with lambda = 1000, scaled by 1e-3.

The loss is written over y so that g = dL/dy serves gradient caching and the token-selection probes; the
variables' gradient is the straight-through pull-back of g.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.dto.config import DTOConfig
from nabla_jax.dto.models import ModelPair
from nabla_jax.dto.prefix_cache import PrefixCache, lm_ahead_logprobs, narrow_prefix_cache, rm_ahead_reward
from nabla_jax.dto.problem import DTOProblem


class LossParts(NamedTuple):
    loglik: jax.Array  # sum of y_i . log p(.|y_<i) over real ahead tokens (not scaled)
    reward: jax.Array  # raw reward score (0 without a reward model or with reward_coeff 0)


def uses_reward(models: ModelPair, config: DTOConfig) -> bool:
    """As the official code: the reward model runs only if there is one and its coefficient is nonzero."""
    return models.has_reward and config.reward_coeff != 0


def loss_parts(
    models: ModelPair, config: DTOConfig, problem: DTOProblem, cache: PrefixCache | None, y: jax.Array
) -> LossParts:
    ahead = jnp.arange(y.shape[0]) < problem.ahead_len
    logp = lm_ahead_logprobs(models, problem, cache, y)
    loglik = jnp.sum(jnp.where(ahead[:, None], y * logp, 0.0))
    reward = rm_ahead_reward(models, problem, cache, y) if uses_reward(models, config) else jnp.zeros((), jnp.float32)
    return LossParts(loglik, reward)


def combine(config: DTOConfig, parts: LossParts) -> jax.Array:
    return -(config.nll_coeff * parts.loglik + config.reward_coeff * parts.reward)


def onehot_loss(
    models: ModelPair, config: DTOConfig, problem: DTOProblem, cache: PrefixCache | None, y: jax.Array
) -> tuple[jax.Array, LossParts]:
    """``(L, parts)`` for one-hots ``y [A, V]`` (float32); differentiate with ``has_aux=True``."""
    parts = loss_parts(models, config, problem, cache, y)
    return combine(config, parts), parts


def loss_and_onehot_grad(
    models: ModelPair,
    config: DTOConfig,
    problem: DTOProblem,
    cache: PrefixCache | None,
    y: jax.Array,
    size: int | None = None,
) -> tuple[jax.Array, LossParts, jax.Array]:
    """One forward/backward through both models: ``(L, parts, dL/dy [A, V])``.

    With ``size`` < A (static; ``problem.ahead_len`` must not exceed it) the pass runs over the first ``size`` ahead
    slots only, with the cache cut to them (:func:`narrow_prefix_cache`), and ``dL/dy`` is padded back with zero
    rows: slots past ``ahead_len`` contribute nothing, so only the work changes (and float rounding, with the shapes
    of the products)."""
    full = y.shape[0]
    if size is not None and size < full:
        cache = None if cache is None else narrow_prefix_cache(models, problem, cache, size)
        y = y[:size]
    (loss, parts), grad = jax.value_and_grad(onehot_loss, argnums=4, has_aux=True)(models, config, problem, cache, y)
    return loss, parts, jnp.pad(grad, ((0, full - grad.shape[0]), (0, 0)))
