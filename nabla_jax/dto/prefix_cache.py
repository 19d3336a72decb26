"""The frozen prefix, run once per DTO call, and the per-step passes over the ahead tokens only.

Slot layouts are static, so nothing depends on traced lengths: the policy buffer ``[P + A - 1]`` holds the prefix
ids, then the soft inputs of ahead tokens ``0 .. A-2``; the reward buffer ``[R + M + Q]`` holds the template prefix
and committed ids, then the chunk built from the ahead tokens and the closing ids. Rotary positions continue from
the real prefix length and padding slots are masked out, so gaps in the slots change nothing. Each ``*_ahead``
function takes ``cache=None`` to re-run the whole sequence (the official behaviour), with the same results. The
layouts in full: docs/design-notes.md.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.dto.models import ModelPair
from nabla_jax.dto.problem import DTOProblem
from nabla_jax.generation.sampling import first_argmax
from nabla_jax.models import decoder
from nabla_jax.models.kv_cache import KVCache, SequenceKV, first_slots, init_cache, row_as_prefix
from nabla_jax.rewards import readout
from nabla_jax.rewards.inputs import reward_input
from nabla_jax.rewards.kinds import LIKELIHOOD


class PrefixCache(NamedTuple):
    lm_kv: KVCache  # batch 1, P + A - 1 slots, the prefix slots filled
    lm_last_logits: jax.Array  # [V] float32: the policy's logits at the last prefix token
    rm_kv: KVCache | None  # batch 1, R + M + Q slots, the prefix slots filled; None without a reward model
    rm_prefix_share: readout.Accumulator | None  # the reward read from the prefix slots
    rm_last_hidden: jax.Array | None  # [d] the reward model's hidden state at the last prefix slot
    rm_slot_values: jax.Array | None = None  # [R] float32 the readout value of every reward prefix slot (what
    #                                          rm_prefix_share accumulates), kept so a longer prefix extends it


def _prefix_kv(config, params, ids, length, buffer_len):
    """Run ``ids[:length]`` into a preallocated cache of ``buffer_len`` slots; returns (hidden [P, d], cache)."""
    size = ids.shape[0]
    cache = init_cache(config, 1, buffer_len, decoder.params_dtype(params))
    valid = (jnp.arange(buffer_len) < length)[None]
    hidden, cache = decoder.forward(
        config, params, decoder.embed(params, ids)[None], jnp.arange(size)[None], valid, cache, 0
    )
    return hidden[0], cache


def build_prefix_cache(models: ModelPair, problem: DTOProblem, ahead_size: int) -> PrefixCache:
    """Keys/values of both frozen prefixes, and the policy logits that predict ahead token 0."""
    p = problem.lm_prefix_ids.shape[0]
    hidden, lm_kv = _prefix_kv(
        models.lm_config, models.lm_params, problem.lm_prefix_ids, problem.lm_prefix_len, p + ahead_size - 1
    )
    last = hidden[jnp.maximum(problem.lm_prefix_len - 1, 0)]
    cache = PrefixCache(lm_kv, decoder.lm_logits(models.lm_config, models.lm_params, last), None, None, None)
    return build_reward_prefix(models, problem, cache, ahead_size) if models.has_reward else cache


def build_reward_prefix(models: ModelPair, problem: DTOProblem, cache: PrefixCache, ahead_size: int) -> PrefixCache:
    """``cache`` with the reward model's side built whole (its policy side as given)."""
    r, q = problem.rm_prefix_ids.shape[0], problem.rm_postfix_ids.shape[0]
    size = r + models.reward_kind.response_slots(ahead_size) + q
    hidden, rm_kv = _prefix_kv(models.rm_config, models.rm_params, problem.rm_prefix_ids, problem.rm_prefix_len, size)
    values, last_hidden = _rm_prefix_values(models, problem, hidden)
    share = readout.accumulate(values, problem.rm_prefix_counted)
    return cache._replace(rm_kv=rm_kv, rm_prefix_share=share, rm_last_hidden=last_hidden,
                          rm_slot_values=values.astype(jnp.float32))


def policy_prefix_from_rollout(cache: PrefixCache, rollout_kv: SequenceKV) -> PrefixCache:
    """``cache`` with the policy's keys/values taken from a rollout that generated the prefix's tokens
    (:func:`nabla_jax.generation.rollouts.sequence_kv` over ``P + A - 1`` positions, ``[layers, P + A - 1, kvh,
    hd]``): what a pass over the prefix computes, up to float rounding, without the pass. ``lm_last_logits`` is
    the caller's to set (the distribution the rollout drew the first ahead token from)."""
    return cache._replace(lm_kv=row_as_prefix(rollout_kv, cache.lm_kv))


def _rm_prefix_values(models: ModelPair, problem: DTOProblem, hidden: jax.Array):
    """``(readout values [R], last hidden [d])`` of the reward prefix's hidden states ``[R, d]``."""
    kind = models.reward_kind
    last_hidden = hidden[jnp.maximum(problem.rm_prefix_len - 1, 0)]
    previous = readout.shifted(hidden, hidden[0]) if kind.name == LIKELIHOOD else None
    values = readout.slot_values(kind, models.rm_config, models.rm_params, hidden, previous, problem.rm_prefix_ids)
    return values, last_hidden


def _rm_prefix_share(models: ModelPair, problem: DTOProblem, hidden: jax.Array):
    """``(accumulator, last hidden [d])`` of the reward prefix's hidden states ``[R, d]``."""
    values, last_hidden = _rm_prefix_values(models, problem, hidden)
    return readout.accumulate(values, problem.rm_prefix_counted), last_hidden


class _Extension(NamedTuple):
    start: jax.Array  # () int32: the first slot not yet run
    kv: KVCache
    before: jax.Array  # [d] the hidden state at slot start - 1
    last: jax.Array  # [d] the hidden state at the prefix's last slot, once a window has reached it
    values: jax.Array  # [R] the readout values of the slots


def _extend_kv(config, params, ids, length, state: _Extension, window: int, readout_values) -> _Extension:
    """Run the prefix slots ``[state.start, length)`` of ``ids [P]`` into ``state.kv``, ``window`` slots per
    forward (rotary position = slot, as :func:`_prefix_kv`). ``readout_values(hidden [W], before_first [d], ids [W])``
    gives the values of a window's slots; they go into ``state.values``."""
    padded = jnp.pad(ids, (0, window))
    offsets = jnp.arange(window)

    def body(s: _Extension) -> _Extension:
        chunk = jax.lax.dynamic_slice_in_dim(padded, s.start, window)
        valid = (jnp.arange(s.kv.k.shape[2]) < s.start + window)[None]
        hidden, kv = decoder.forward(
            config, params, decoder.embed(params, chunk)[None], (s.start + offsets)[None], valid, s.kv, s.start
        )
        hidden = hidden[0]
        at_last = length - 1 - s.start
        last = jnp.where((at_last >= 0) & (at_last < window), hidden[jnp.clip(at_last, 0, window - 1)], s.last)
        values = s.values.at[s.start + offsets].set(readout_values(hidden, s.before, chunk), mode="drop")
        return _Extension(s.start + window, kv, hidden[-1], last, values)

    return jax.lax.while_loop(lambda s: s.start < length, body, state)


def extend_reward_prefix(
    models: ModelPair, problem: DTOProblem, cache: PrefixCache, rm_from, window: int
) -> PrefixCache:
    """``cache``, whose reward side was built for a shorter prefix of the same problem, with that side extended to
    ``problem``'s reward prefix: only the slots from ``rm_from`` on run, ``window`` slots per forward. ``rm_from``
    must be the old reward prefix's length (its first new slot reads ``cache.rm_last_hidden``, the hidden state
    before it). Equals :func:`build_reward_prefix` up to float rounding (the keys/values come from smaller matmuls);
    the policy's side comes from the rollouts (:func:`policy_prefix_from_rollout`)."""
    kind, cfg, params = models.reward_kind, models.rm_config, models.rm_params

    def readout_values(hidden, before_first, ids):
        previous = readout.shifted(hidden, before_first) if kind.name == LIKELIHOOD else None
        return readout.slot_values(kind, cfg, params, hidden, previous, ids).astype(jnp.float32)

    rm = _extend_kv(
        cfg, params, problem.rm_prefix_ids, problem.rm_prefix_len,
        _Extension(jnp.asarray(rm_from, jnp.int32), cache.rm_kv, cache.rm_last_hidden, cache.rm_last_hidden,
                   cache.rm_slot_values), window, readout_values,
    )
    share = readout.accumulate(rm.values, problem.rm_prefix_counted)
    return cache._replace(rm_kv=rm.kv, rm_prefix_share=share, rm_last_hidden=rm.last, rm_slot_values=rm.values)


# the ahead buffers a forward/backward may run over (ahead_sizes): the multiples of a quarter of the whole buffer,
# none under MIN_AHEAD_SIZE slots (on XLA CPU a product over 4 rows takes as long as one over 8: docs/design-notes.md)
AHEAD_BUCKETS, MIN_AHEAD_SIZE = 4, 8


def ahead_sizes(ahead_size: int) -> tuple[int, ...]:
    """The ahead buffers a forward/backward over the ahead tokens may run over, smallest first: the multiples of
    ``ahead_size / AHEAD_BUCKETS`` (at least :data:`MIN_AHEAD_SIZE` slots) and the whole buffer, each compiled once. A
    pass runs over the smallest that holds its rows' ahead tokens (:func:`nabla_jax.rows.when_any_fits`): in the
    ∇-Reasoner ``ahead_len`` shrinks as tokens are committed, and slots past it cost as much as real ones."""
    step = max(-(-ahead_size // AHEAD_BUCKETS), MIN_AHEAD_SIZE)
    return tuple(range(step, ahead_size, step)) + (ahead_size,)


def narrow_prefix_cache(models: ModelPair, problem: DTOProblem, cache: PrefixCache, ahead_size: int) -> PrefixCache:
    """``cache`` (built for a larger ahead buffer) cut to the buffers of ``ahead_size`` ahead slots, so passes over
    only the first ``ahead_size`` ahead tokens read it (the slots cut off hold nothing yet)."""
    p = problem.lm_prefix_ids.shape[0]
    lm_kv = first_slots(cache.lm_kv, p + ahead_size - 1)
    if cache.rm_kv is None:
        return cache._replace(lm_kv=lm_kv)
    r, q = problem.rm_prefix_ids.shape[0], problem.rm_postfix_ids.shape[0]
    size = r + models.reward_kind.response_slots(ahead_size) + q
    return cache._replace(lm_kv=lm_kv, rm_kv=first_slots(cache.rm_kv, size))


@jax.custom_vjp
def _soft_embeds(y: jax.Array, matrix: jax.Array) -> jax.Array:
    """``y @ matrix`` in the model dtype, for the loss's one-hot-valued ``y [A, V]`` (straight-through one-hots:
    exact one-hots in value, gradients flowing to the soft weights). The forward reads the rows (a one-hot row times
    the matrix is exactly that row), which spares a dense product over the vocabulary per model and pass; the
    backward is the product's own."""
    return matrix[first_argmax(y)]


def _soft_embeds_forward(y, matrix):
    return _soft_embeds(y, matrix), (y, matrix)


def _soft_embeds_backward(residuals, g):
    y, matrix = residuals
    wide = y.astype(matrix.dtype)
    return jnp.dot(g, matrix.T).astype(y.dtype), jnp.dot(wide.T, g).astype(matrix.dtype)


_soft_embeds.defvjp(_soft_embeds_forward, _soft_embeds_backward)


def lm_ahead_logprobs(models: ModelPair, problem: DTOProblem, cache: PrefixCache | None, y: jax.Array) -> jax.Array:
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


def rm_ahead_reward(models: ModelPair, problem: DTOProblem, cache: PrefixCache | None, y: jax.Array) -> jax.Array:
    """The reward of template prefix + committed + soft ahead + closing ids, for any reward kind.

    The chunk after the prefix comes from :func:`reward_input` on the forward tokens ``argmax(y)`` (the
    straight-through one-hots are exact one-hots in the forward pass): its ids say where separators and closing
    tokens go and which slots are read; the ahead slots take the soft embeddings ``y @ E``, so gradients reach y."""
    cfg, params, kind = models.rm_config, models.rm_params, models.reward_kind
    r = problem.rm_prefix_ids.shape[0]
    ahead_ids = jnp.take(models.reward_index, first_argmax(y))
    chunk = reward_input(
        kind, jnp.zeros((0,), jnp.int32), 0, ahead_ids, problem.ahead_len, problem.rm_postfix_ids,
        problem.rm_postfix_len, pad=0,
    )
    soft = _soft_embeds(y, models.reward_embed).astype(decoder.params_dtype(params))
    source = jnp.maximum(chunk.source, 0)
    embeds = jnp.where((chunk.source >= 0)[:, None], soft[source], decoder.embed(params, chunk.ids))
    positions = problem.rm_prefix_len + jnp.arange(chunk.ids.shape[0])
    kv_valid = jnp.concatenate([jnp.arange(r) < problem.rm_prefix_len, chunk.valid])
    if cache is not None:
        hidden, _ = decoder.forward(cfg, params, embeds[None], positions[None], kv_valid[None], cache.rm_kv, r)
        prefix_share, before_first = cache.rm_prefix_share, cache.rm_last_hidden
    else:
        full_embeds = jnp.concatenate([decoder.embed(params, problem.rm_prefix_ids), embeds])
        all_positions = jnp.concatenate([jnp.arange(r), positions])
        full, _ = decoder.forward(cfg, params, full_embeds[None], all_positions[None], kv_valid[None])
        prefix_share, before_first = _rm_prefix_share(models, problem, full[0, :r])
        hidden = full[:, r:]
    hidden = hidden[0]
    previous = targets = None
    if kind.name == LIKELIHOOD:
        previous = readout.shifted(hidden, before_first)
        targets = y[source]
    values = readout.slot_values(kind, cfg, params, hidden, previous, targets, models.reward_index)
    return readout.finish(kind, readout.merge(prefix_share, readout.accumulate(values, chunk.counted)))

