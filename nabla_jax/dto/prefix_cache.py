"""The frozen prefix, run once per DTO call, and the per-step passes over the ahead tokens only.

Slot layout (static, so nothing depends on traced lengths):

- policy buffer ``[P + A - 1]``: the prefix ids in slots ``[0, P)`` (real up to ``lm_prefix_len``), then the soft
  inputs of ahead tokens ``0 .. A-2`` in slots ``[P, P + A - 1)``. The last ahead token is never an input: its
  log-probability comes from the token before it. Rotary positions continue from ``lm_prefix_len``, and the padding
  slots between are masked out, so the gap in slots changes nothing.
- reward buffer ``[R + A + Q]``: template prefix + committed ids, then the soft ahead tokens, then the closing ids.
  The closing ids' positions continue from ``rm_prefix_len + ahead_len``; the reward is read at the last real slot.

Each ``*_ahead`` function takes ``cache=None`` to re-run the whole sequence instead (the official code's behaviour,
used by the exactness tests and the benchmark); the results are the same.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.dto.models import DTOModels
from nabla_jax.dto.problem import DTOProblem
from nabla_jax.models import decoder


class PrefixCache(NamedTuple):
    lm_kv: decoder.KVCache  # [layers, 1, P + A - 1, kv_heads, head_dim], prefix slots filled
    lm_last_logits: jax.Array  # [V] float32: the policy's logits at the last prefix token
    rm_kv: decoder.KVCache | None  # [layers, 1, R + A + Q, ...], prefix slots filled; None without a reward model


def _prefix_kv(config, params, ids, length, buffer_len):
    """Run ``ids[:length]`` into a preallocated cache of ``buffer_len`` slots; returns (hidden [P, d], cache)."""
    size = ids.shape[0]
    cache = decoder.init_cache(config, 1, buffer_len, decoder.params_dtype(params))
    valid = (jnp.arange(buffer_len) < length)[None]
    hidden, cache = decoder.forward(
        config, params, decoder.embed(params, ids)[None], jnp.arange(size)[None], valid, cache, 0
    )
    return hidden[0], cache


def build_prefix_cache(models: DTOModels, problem: DTOProblem, ahead_size: int) -> PrefixCache:
    """Keys/values of both frozen prefixes, and the policy logits that predict ahead token 0."""
    p = problem.lm_prefix_ids.shape[0]
    hidden, lm_kv = _prefix_kv(
        models.lm_config, models.lm_params, problem.lm_prefix_ids, problem.lm_prefix_len, p + ahead_size - 1
    )
    last = hidden[jnp.maximum(problem.lm_prefix_len - 1, 0)]
    last_logits = decoder.lm_logits(models.lm_config, models.lm_params, last)
    rm_kv = None
    if models.has_reward:
        r, q = problem.rm_prefix_ids.shape[0], problem.rm_postfix_ids.shape[0]
        _, rm_kv = _prefix_kv(
            models.rm_config, models.rm_params, problem.rm_prefix_ids, problem.rm_prefix_len, r + ahead_size + q
        )
    return PrefixCache(lm_kv, last_logits, rm_kv)


def _soft_embeds(y: jax.Array, matrix: jax.Array) -> jax.Array:
    """``y @ matrix`` in the model dtype (a one-hot row gives the embedding row exactly)."""
    return jnp.dot(y.astype(matrix.dtype), matrix)


def lm_ahead_logprobs(models: DTOModels, problem: DTOProblem, cache: PrefixCache | None, y: jax.Array) -> jax.Array:
    """``[A, V]`` float32 log-probabilities the policy assigns at each ahead position given the tokens before it.

    Row 0 comes from the prefix alone; row i >= 1 from the hidden state of ahead token i - 1 (fed as ``y E``).
    """
    cfg, params = models.lm_config, models.lm_params
    a = y.shape[0]
    p = problem.lm_prefix_ids.shape[0]
    prefix_valid = jnp.arange(p) < problem.lm_prefix_len
    inputs = _soft_embeds(y[: a - 1], decoder.embedding_matrix(params))  # [A-1, d]
    positions = problem.lm_prefix_len + jnp.arange(a - 1)
    kv_valid = jnp.concatenate([prefix_valid, jnp.arange(a - 1) < problem.ahead_len])
    if cache is not None:
        last_logits = cache.lm_last_logits
        if a > 1:
            hidden, _ = decoder.forward(cfg, params, inputs[None], positions[None], kv_valid[None], cache.lm_kv, p)
            hidden = hidden[0]
    else:
        dtype = decoder.params_dtype(params)
        embeds = jnp.concatenate([decoder.embed(params, problem.lm_prefix_ids), inputs.astype(dtype)])
        all_positions = jnp.concatenate([jnp.arange(p), positions])
        full, _ = decoder.forward(cfg, params, embeds[None], all_positions[None], kv_valid[None])
        last_logits = decoder.lm_logits(cfg, params, full[0, jnp.maximum(problem.lm_prefix_len - 1, 0)])
        hidden = full[0, p:]
    logits = last_logits[None]
    if a > 1:
        logits = jnp.concatenate([logits, decoder.lm_logits(cfg, params, hidden)])
    return jax.nn.log_softmax(logits, axis=-1)


def rm_ahead_reward(models: DTOModels, problem: DTOProblem, cache: PrefixCache | None, y: jax.Array) -> jax.Array:
    """The reward model's raw scalar score of template prefix + committed + soft ahead + closing ids."""
    cfg, params = models.rm_config, models.rm_params
    a = y.shape[0]
    r, q = problem.rm_prefix_ids.shape[0], problem.rm_postfix_ids.shape[0]
    dtype = decoder.params_dtype(params)
    chunk = jnp.concatenate(
        [_soft_embeds(y, models.reward_embed).astype(dtype), decoder.embed(params, problem.rm_postfix_ids)]
    )
    chunk_valid = jnp.concatenate([jnp.arange(a) < problem.ahead_len, jnp.arange(q) < problem.rm_postfix_len])
    positions = problem.rm_prefix_len + jnp.concatenate([jnp.arange(a), problem.ahead_len + jnp.arange(q)])
    kv_valid = jnp.concatenate([jnp.arange(r) < problem.rm_prefix_len, chunk_valid])
    if cache is not None:
        hidden, _ = decoder.forward(cfg, params, chunk[None], positions[None], kv_valid[None], cache.rm_kv, r)
    else:
        embeds = jnp.concatenate([decoder.embed(params, problem.rm_prefix_ids), chunk])
        all_positions = jnp.concatenate([jnp.arange(r), positions])
        full, _ = decoder.forward(cfg, params, embeds[None], all_positions[None], kv_valid[None])
        hidden = full[:, r:]
    return decoder.score(cfg, params, hidden, chunk_valid[None])[0, 0]
