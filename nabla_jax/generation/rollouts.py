"""Rollouts: prefill plus sampled decode of a batch of rows, as an ``(init, step)`` pair run by ``lax.while_loop``.

Everything here is pure and traceable (prompt lengths, keys, budgets and response starts may be traced). The loop is
batch-native: all rows advance together, one token per step, and rows that have finished stop changing. Invariants:
a row's result never depends on the rest of its batch (its own rotary positions, mask, key and, when ``step`` is
``[B]``, step counter); ``lm_logits(latents[t])`` are exactly the logits token t was sampled from; ``length``
includes the EOS or stop sequence that ended the row; token t is sampled with ``fold_in(key, t)``. :func:`rollout`
is a batch of one. Buffer layout and alignment: docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.generation.sampling import SamplingConfig, penalize_repetition, sample_token, seen_tokens
from nabla_jax.models import decoder
from nabla_jax.models.config import DecoderConfig
from nabla_jax.models.kv_cache import LayerCache, SequenceKV, decode_caches, gather_sequence
from nabla_jax.models.layers import write_cache
from nabla_jax.rows import drop_row_axis, where_rows

FINISH_LENGTH, FINISH_EOS, FINISH_STOP, FINISH_NONFINITE = 0, 1, 2, 3
FINISH_NAMES = ("length", "eos", "stop", "nonfinite")


@dataclasses.dataclass(frozen=True)
class RolloutSpec:
    """The static part of a rollout (hashable: a static ``jit`` argument).

    ``eos_ids``: a generated token in this set ends the row. ``stop_sequences``: token-id tuples; the row ends
    when its last tokens equal one of them, counting only tokens at or after ``response_start`` (default: the
    generated ones)."""

    max_new_tokens: int
    sampling: SamplingConfig = SamplingConfig()
    eos_ids: tuple[int, ...] = ()
    stop_sequences: tuple[tuple[int, ...], ...] = ()
    pad_id: int = 0
    keep_latents: bool = True  # False: no latents are kept (``[B, 0, d]``), for callers that need only tokens

    def __post_init__(self):
        if int(self.max_new_tokens) != self.max_new_tokens or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens}")
        stops = tuple(tuple(int(t) for t in seq) for seq in self.stop_sequences)
        if any(len(seq) == 0 for seq in stops):
            raise ValueError("a stop sequence is empty")
        object.__setattr__(self, "max_new_tokens", int(self.max_new_tokens))
        object.__setattr__(self, "eos_ids", tuple(sorted({int(t) for t in self.eos_ids})))
        object.__setattr__(self, "stop_sequences", tuple(dict.fromkeys(stops)))
        object.__setattr__(self, "pad_id", int(self.pad_id))


class RolloutState(NamedTuple):
    """Loop state of a batch of rows. After ``step`` steps every unfinished row has generated ``step`` tokens."""

    sequence: jax.Array  # [B, S] int32: prompt, generated tokens, pad (the output layout)
    latents: jax.Array  # [B, N, d] params dtype ([B, 0, d] without spec.keep_latents)
    cache: tuple[LayerCache, ...]  # per layer (generated token t in slot Lp + t)
    seen: jax.Array | None  # [B, V] bool: tokens seen so far (with a repetition penalty only)
    prompt_len: jax.Array  # [B] int32
    response_start: jax.Array  # [B] int32: first slot a stop sequence may cover
    length: jax.Array  # [B] int32
    limit: jax.Array  # [B] int32: min(budget, N)
    done: jax.Array  # [B] bool
    finish: jax.Array  # [B] int32 FINISH_*
    key: jax.Array  # [B]
    step: jax.Array  # int32, shared by the batch; or [B] int32, one per row (rows refilled at different times)


class Rollout(NamedTuple):
    tokens: jax.Array  # [N] int32, pad_id after length
    length: jax.Array  # int32: generated tokens, incl. the EOS / stop tokens
    latents: jax.Array  # [N, d]: latents[t] produced tokens[t]; zero after length
    finish: jax.Array  # int32 FINISH_LENGTH | FINISH_EOS | FINISH_STOP | FINISH_NONFINITE (NaN/inf logits)
    sequence: jax.Array  # [Lp + N] int32: prompt then generated tokens, right-padded with pad_id
    sequence_length: jax.Array  # int32: prompt_len + length
    kv: SequenceKV | None = None  # by sequence position (sequence_kv), when asked for


def stop_match(sequence, slot, response_start, stop_sequences) -> jax.Array:
    """Whether the tokens of ``sequence [S]`` ending at ``slot`` equal one of ``stop_sequences`` (static tuples),
    with the whole match at or after slot ``response_start``."""
    matched = jnp.zeros((), bool)
    for seq in stop_sequences:
        m = len(seq)
        if m > sequence.shape[0]:
            continue
        start = slot - m + 1
        window = jax.lax.dynamic_slice_in_dim(sequence, jnp.maximum(start, 0), m)
        matched |= (start >= response_start) & jnp.all(window == jnp.asarray(seq, jnp.int32))
    return matched


def _sample(spec: RolloutSpec, state: RolloutState, logits) -> jax.Array:
    """Token ``state.step`` of every row from its ``logits [B, V]``."""
    if spec.sampling.penalty != 1.0:  # the prompt and the tokens generated so far
        logits = penalize_repetition(logits, state.seen, spec.sampling.penalty)
    steps = jnp.broadcast_to(state.step, state.key.shape)
    keys = jax.vmap(jax.random.fold_in)(state.key, steps)
    return jax.vmap(lambda lg, key: sample_token(lg, key, spec.sampling))(logits, keys)


def _emit(config: DecoderConfig, params, spec: RolloutSpec, state: RolloutState, hidden) -> RolloutState:
    """Sample token ``state.step`` of every unfinished row from ``hidden [B, d]``, record it and its latent, and test
    for the end; finished rows do not change."""
    t, active = state.step, ~state.done
    slot = state.prompt_len + t
    logits = decoder.lm_logits(config, params, hidden)
    token = jnp.where(active, _sample(spec, state, logits), spec.pad_id)
    here = active[:, None] & (jnp.arange(state.sequence.shape[1]) == slot[:, None])
    sequence = jnp.where(here, token[:, None], state.sequence)
    latents = state.latents
    if spec.keep_latents:
        written = jnp.where(active[:, None], hidden, 0).astype(latents.dtype)
        latents = write_cache(latents, written[:, None], t)
        if jnp.ndim(t):  # per-row steps: a finished row's step runs on, and must not write over its last latent
            latents = where_rows(active, latents, state.latents)
    seen = state.seen
    if seen is not None:
        rows = jnp.arange(token.shape[0])
        seen = seen.at[rows, token].set(seen[rows, token] | active)
    is_eos = jnp.isin(token, jnp.asarray(spec.eos_ids, jnp.int32)) if spec.eos_ids else jnp.zeros_like(active)
    match = functools.partial(stop_match, stop_sequences=spec.stop_sequences)
    is_stop = jax.vmap(match)(sequence, slot, state.response_start)
    broken = ~jnp.all(jnp.isfinite(logits), axis=-1)  # NaN/inf logits: the token is noise, so the row ends, flagged
    finish = jnp.where(is_eos, FINISH_EOS, jnp.where(is_stop, FINISH_STOP, FINISH_LENGTH))
    finish = jnp.where(broken, FINISH_NONFINITE, finish).astype(jnp.int32)
    return state._replace(
        sequence=sequence,
        latents=latents,
        seen=seen,
        length=jnp.where(active, t + 1, state.length),
        done=state.done | (active & (is_eos | is_stop | broken | (t + 1 >= state.limit))),
        finish=jnp.where(active, finish, state.finish),
        step=t + 1,
    )


def _prefill(config: DecoderConfig, params, prompts, prompt_lens, extra_slots: int):
    """``(hidden state at each row's last prompt token [B, d], decode caches)`` of a pass over the prompt buffers."""
    rows, buffer_len = prompts.shape
    valid = jnp.arange(buffer_len)[None] < prompt_lens[:, None]
    positions = jnp.broadcast_to(jnp.arange(buffer_len), (rows, buffer_len))
    hidden, kv = decoder.forward(config, params, decoder.embed(params, prompts), positions, valid)
    last = jnp.take_along_axis(hidden, (prompt_lens - 1)[:, None, None], axis=1)[:, 0]
    return last, decode_caches(kv, extra_slots)  # room for the generated tokens


def _last_token_pass(config: DecoderConfig, params, layers, prompts, prompt_lens, prompt_kv, extra_slots: int):
    """:func:`_prefill` for prompts whose keys/values are known but for the last token's (``prompt_kv``: by slot,
    ``[layers, B, Lp, kvh, hd]``, real before ``prompt_lens - 1``): one decode step over that token."""
    buffer_len = prompts.shape[1]
    last_slot = prompt_lens - 1
    token = jnp.take_along_axis(prompts, last_slot[:, None], axis=1)
    kv_valid = jnp.arange(buffer_len + extra_slots)[None] < prompt_lens[:, None]
    hidden, cache = decoder.forward_layers(
        config, params, layers, decoder.embed(params, token), last_slot[:, None], kv_valid,
        decode_caches(prompt_kv, extra_slots), last_slot,
    )
    return hidden[:, 0], cache


def rollout_init(
    config: DecoderConfig, params, spec: RolloutSpec, prompts, prompt_lens, keys, budgets=None, response_starts=None,
    prompt_kv=None, layers=None,
) -> RolloutState:
    """Prefill the prompt buffers ``[B, Lp]`` (the first ``prompt_lens`` tokens of each real) and sample each row's
    first token.

    ``budgets [B]`` (optional, traced) cap the new tokens below ``spec.max_new_tokens`` (0 generates none);
    ``response_starts [B]`` (default ``prompt_lens``) are the first slots a stop sequence may cover. ``prompt_kv``
    (optional, ``[layers, B, Lp, kvh, hd]`` by slot): the prompts' keys/values, real for every token but the last,
    which a caller that carries them already has; then only the last token runs (through ``layers``)."""
    prompts = jnp.asarray(prompts, jnp.int32)
    rows, buffer_len = prompts.shape
    n = spec.max_new_tokens
    prompt_lens = jnp.asarray(prompt_lens, jnp.int32)
    if prompt_kv is None:
        last, cache = _prefill(config, params, prompts, prompt_lens, n)
    else:
        layers = decoder.split_layers(params) if layers is None else layers
        last, cache = _last_token_pass(config, params, layers, prompts, prompt_lens, prompt_kv, n)
    valid = jnp.arange(buffer_len)[None] < prompt_lens[:, None]
    sequence = jnp.concatenate([jnp.where(valid, prompts, spec.pad_id), jnp.full((rows, n), spec.pad_id, jnp.int32)], 1)
    limit = jnp.full((rows,), n, jnp.int32) if budgets is None else jnp.clip(jnp.asarray(budgets, jnp.int32), 0, n)
    seen = None
    if spec.sampling.penalty != 1.0:
        seen = jax.vmap(lambda s, p: seen_tokens(s, p, config.vocab_size))(sequence, prompt_lens)
    state = RolloutState(
        sequence=sequence,
        latents=jnp.zeros((rows, n if spec.keep_latents else 0, config.hidden_size), last.dtype),
        cache=cache,
        seen=seen,
        prompt_len=prompt_lens,
        response_start=prompt_lens if response_starts is None else jnp.asarray(response_starts, jnp.int32),
        length=jnp.zeros((rows,), jnp.int32),
        limit=limit,
        done=limit <= 0,
        finish=jnp.full((rows,), FINISH_LENGTH, jnp.int32),
        key=keys,
        step=jnp.int32(0),
    )
    return _emit(config, params, spec, state, last)


def rollout_step(config: DecoderConfig, params, layers, spec: RolloutSpec, state: RolloutState) -> RolloutState:
    """Feed every row's last generated token through the cached decoder and sample the next one. ``layers`` are
    the per-layer params (:func:`nabla_jax.models.decoder.split_layers`), split once outside the loop."""
    t = jnp.minimum(state.step - 1, spec.max_new_tokens - 1)  # the token fed in: generated token t, in slot Lp + t
    # (a finished row's per-row step may run past the buffer; its outputs no longer change, see _emit)
    prompt_slots = state.sequence.shape[1] - spec.max_new_tokens
    token = jnp.take_along_axis(state.sequence, (state.prompt_len + t)[:, None], axis=1)
    slots = jnp.arange(state.sequence.shape[1])[None]
    kv_valid = (slots < state.prompt_len[:, None]) | ((slots >= prompt_slots) & (slots <= prompt_slots + jnp.reshape(t, (-1, 1))))
    hidden, cache = decoder.forward_layers(
        config, params, layers, decoder.embed(params, token), (state.prompt_len + t)[:, None], kv_valid, state.cache,
        prompt_slots + t,
    )
    return _emit(config, params, spec, state._replace(cache=cache), hidden[:, 0])


def sequence_kv(spec: RolloutSpec, state: RolloutState, slots: int) -> SequenceKV:
    """Every row's keys/values by position in its sequence, ``[B, layers, slots, kvh, hd]``: the prompt's from the
    prefill, then generated token t's from the step that fed it back (buffer slot ``Lp + t``). Real for the positions
    before ``prompt_len + length - 1`` (the last generated token is never fed back); other slots hold other slots'
    keys/values. A caller that goes on from a longer prefix of this sequence needs no pass over it."""
    prompt_slots = state.sequence.shape[1] - spec.max_new_tokens
    position, prompt_len = jnp.arange(slots)[None], state.prompt_len[:, None]
    source = jnp.where(position < prompt_len, position, prompt_slots + position - prompt_len)
    return gather_sequence(state.cache, jnp.clip(source, 0, state.sequence.shape[1] - 1))


def rollout_result(spec: RolloutSpec, state: RolloutState, kv_slots: int | None = None) -> Rollout:
    """The rows' outputs ``[B, ...]``, with :func:`sequence_kv` over ``kv_slots`` positions when given."""
    take = jax.vmap(lambda seq, start: jax.lax.dynamic_slice_in_dim(seq, start, spec.max_new_tokens))
    return Rollout(
        tokens=take(state.sequence, state.prompt_len),
        length=state.length,
        latents=state.latents,
        finish=state.finish,
        sequence=state.sequence,
        sequence_length=state.prompt_len + state.length,
        kv=None if kv_slots is None else sequence_kv(spec, state, kv_slots),
    )


def rollout_rows(
    config: DecoderConfig,
    params,
    spec: RolloutSpec,
    prompts,
    prompt_lens,
    keys,
    budgets=None,
    response_starts=None,
    layers=None,
    kv_slots: int | None = None,
    prompt_kv=None,
) -> Rollout:
    """Generate up to ``spec.max_new_tokens`` tokens after each ``prompts[b, :prompt_lens[b]]`` (no host work);
    every output has a leading row axis. ``layers``: the per-layer params (:func:`decoder.split_layers`), for a
    caller that runs many rollouts with the same params and splits them once; None splits them here. ``kv_slots``:
    return the keys/values of the first ``kv_slots`` sequence positions too (:func:`sequence_kv`). ``prompt_kv``:
    the prompts' keys/values but the last token's, where the caller has them (:func:`rollout_init`).

    The caller validates lengths: each prompt length in [1, Lp] and ``prompt_len + max_new_tokens`` within the
    model's context (see :func:`nabla_jax.generation.buckets.check_lengths`)."""
    layers = decoder.split_layers(params) if layers is None else layers
    state = rollout_init(config, params, spec, prompts, prompt_lens, keys, budgets, response_starts, prompt_kv, layers)
    state = jax.lax.while_loop(
        lambda s: jnp.any(~s.done), functools.partial(rollout_step, config, params, layers, spec), state
    )
    return rollout_result(spec, state, kv_slots)


def rollout(
    config: DecoderConfig, params, spec: RolloutSpec, prompt, prompt_len, key, budget=None, response_start=None
) -> Rollout:
    """:func:`rollout_rows` for one sequence: prompt ``[Lp]`` and scalars in, outputs without a row axis."""
    batch = jax.tree.map(lambda x: jnp.expand_dims(x, 0), (prompt, prompt_len, key, budget, response_start))
    return drop_row_axis(rollout_rows(config, params, spec, *batch))


def rollout_logits(config: DecoderConfig, params, latents: jax.Array) -> jax.Array:
    """float32 logits ``[..., V]`` of rollout latents: row t is the distribution token t was sampled from."""
    return decoder.lm_logits(config, params, latents)



@functools.partial(jax.jit, static_argnums=(0, 2))
def rollout_batch(config: DecoderConfig, params, spec: RolloutSpec, prompts, prompt_lens, keys, layers=None) -> Rollout:
    """The rows of a batch, jitted: prompts ``[B, Lp]``, prompt_lens ``[B]``, keys ``[B]``; ``layers``: the params
    split by :data:`split_layers` (None splits them inside)."""
    return rollout_rows(config, params, spec, prompts, prompt_lens, keys, layers=layers)


# The per-layer params for many decode calls, split once by their own small program: on XLA CPU that is several
# times faster than splitting inside a rollout's program (docs/design-notes.md).
split_layers = jax.jit(decoder.split_layers)
