"""Rollouts: prefill plus sampled decode of ONE sequence, as an ``(init, step)`` pair run by ``lax.while_loop``.

Everything here is per sequence, pure and traceable (``prompt_len``, ``key``, ``budget`` and ``response_start``
may be traced), so callers use it inside their own ``jit``/``vmap``/``while_loop``. Batches are ``jax.vmap`` of
:func:`rollout` (:func:`rollout_batch`), so a row's result never depends on the rest of its batch.

Buffer layout: the prompt buffer ``[Lp]`` is right-padded; the sequence buffer and the KV cache have
``S = Lp + max_new_tokens`` slots; prompt token j sits in slot j (rotary position j), generated token t in slot
``prompt_len + t``.

Alignment (what DTO optimises): ``latents[t]`` is the final hidden state, after the last norm, that produced
``tokens[t]`` (for t = 0, the prefill's last prompt position), so ``lm_logits(latents[t])`` are exactly the logits
token t was sampled from. Logits are not stored (that is O(N x V)); :func:`rollout_logits` recomputes them.
Latents keep the params dtype; DTO casts them to float32 itself.

``length`` counts the generated tokens *including* the EOS token or the stop sequence that ended the row (so the
EOS is in ``tokens``, as in transformers' ``generate``); past it, tokens are ``pad_id`` and latents are zero.
Token t is sampled with ``fold_in(key, t)``.
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
    """Loop state of one sequence: ``length`` tokens are generated, the last one in slot prompt_len + length - 1."""

    sequence: jax.Array  # [S] int32: prompt, generated tokens, pad
    latents: jax.Array  # [N, d] params dtype
    cache: decoder.KVCache  # [L, 1, S, kvh, hd] each
    prompt_len: jax.Array  # int32
    response_start: jax.Array  # int32: first slot a stop sequence may cover
    length: jax.Array  # int32
    limit: jax.Array  # int32: min(budget, N)
    done: jax.Array  # bool
    finish: jax.Array  # int32 FINISH_*
    key: jax.Array


class Rollout(NamedTuple):
    tokens: jax.Array  # [N] int32, pad_id after length
    length: jax.Array  # int32: generated tokens, incl. the EOS / stop tokens
    latents: jax.Array  # [N, d]: latents[t] produced tokens[t]; zero after length
    finish: jax.Array  # int32 FINISH_LENGTH | FINISH_EOS | FINISH_STOP | FINISH_NONFINITE (NaN/inf logits)
    sequence: jax.Array  # [Lp + N] int32: prompt then generated tokens, right-padded with pad_id
    sequence_length: jax.Array  # int32: prompt_len + length


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


def _emit(config: DecoderConfig, params, spec: RolloutSpec, state: RolloutState, hidden) -> RolloutState:
    """Sample token ``state.length`` from ``hidden [d]``, record it and its latent, and test for the end."""
    t = state.length
    slot = state.prompt_len + t
    logits = decoder.lm_logits(config, params, hidden)
    if spec.sampling.repetition_penalty != 1.0:  # the prompt and the tokens generated so far
        seen = seen_tokens(state.sequence, slot, logits.shape[-1])
        logits = penalize_repetition(logits, seen, spec.sampling.repetition_penalty)
    token = sample_token(logits, jax.random.fold_in(state.key, t), spec.sampling)
    sequence = jax.lax.dynamic_update_index_in_dim(state.sequence, token, slot, axis=0)
    latents = jax.lax.dynamic_update_index_in_dim(state.latents, hidden.astype(state.latents.dtype), t, axis=0)
    is_eos = jnp.any(token == jnp.asarray(spec.eos_ids, jnp.int32)) if spec.eos_ids else jnp.zeros((), bool)
    is_stop = stop_match(sequence, slot, state.response_start, spec.stop_sequences)
    broken = ~jnp.all(jnp.isfinite(logits))  # NaN/inf logits: the token is noise, so the row ends here, flagged
    finish = jnp.where(is_eos, FINISH_EOS, jnp.where(is_stop, FINISH_STOP, FINISH_LENGTH))
    finish = jnp.where(broken, FINISH_NONFINITE, finish).astype(jnp.int32)
    return state._replace(
        sequence=sequence,
        latents=latents,
        length=t + 1,
        done=is_eos | is_stop | broken | (t + 1 >= state.limit),
        finish=finish,
    )


def rollout_init(
    config: DecoderConfig, params, spec: RolloutSpec, prompt, prompt_len, key, budget=None, response_start=None
) -> RolloutState:
    """Prefill the prompt buffer ``[Lp]`` (first ``prompt_len`` tokens real) and sample the first token.

    ``budget`` (optional, traced) caps the new tokens below ``spec.max_new_tokens`` (0 generates none);
    ``response_start`` (default ``prompt_len``) is the first slot a stop sequence may cover."""
    prompt = jnp.asarray(prompt, jnp.int32)
    buffer_len = prompt.shape[0]
    n = spec.max_new_tokens
    prompt_len = jnp.asarray(prompt_len, jnp.int32)
    valid = jnp.arange(buffer_len) < prompt_len
    hidden, kv = decoder.forward(
        config, params, decoder.embed(params, prompt[None]), jnp.arange(buffer_len)[None], valid[None]
    )
    grow = [(0, 0)] * kv.k.ndim
    grow[2] = (0, n)  # the slot axis: room for the generated tokens
    cache = decoder.KVCache(jnp.pad(kv.k, grow), jnp.pad(kv.v, grow))
    sequence = jnp.concatenate([jnp.where(valid, prompt, spec.pad_id), jnp.full((n,), spec.pad_id, jnp.int32)])
    limit = jnp.int32(n) if budget is None else jnp.clip(jnp.asarray(budget, jnp.int32), 0, n)
    state = RolloutState(
        sequence=sequence,
        latents=jnp.zeros((n, config.hidden_size), hidden.dtype),
        cache=cache,
        prompt_len=prompt_len,
        response_start=prompt_len if response_start is None else jnp.asarray(response_start, jnp.int32),
        length=jnp.int32(0),
        limit=limit,
        done=limit <= 0,
        finish=jnp.int32(FINISH_LENGTH),
        key=key,
    )
    last = jax.lax.dynamic_index_in_dim(hidden[0], prompt_len - 1, axis=0, keepdims=False)
    first = _emit(config, params, spec, state, last)
    go = limit > 0
    return first._replace(
        sequence=jnp.where(go, first.sequence, state.sequence),
        latents=jnp.where(go, first.latents, state.latents),
        length=jnp.where(go, first.length, state.length),
        done=jnp.where(go, first.done, state.done),
    )


def rollout_step(config: DecoderConfig, params, spec: RolloutSpec, state: RolloutState) -> RolloutState:
    """Feed the last generated token through the cached decoder and sample the next one."""
    slot = state.prompt_len + state.length - 1
    token = jax.lax.dynamic_index_in_dim(state.sequence, slot, axis=0, keepdims=False)
    kv_valid = jnp.arange(state.sequence.shape[0]) <= slot
    hidden, cache = decoder.forward(
        config,
        params,
        decoder.embed(params, token.reshape(1, 1)),
        slot.reshape(1, 1),
        kv_valid[None],
        state.cache,
        write_index=slot,
    )
    return _emit(config, params, spec, state._replace(cache=cache), hidden[0, 0])


def rollout_result(spec: RolloutSpec, state: RolloutState) -> Rollout:
    tokens = jax.lax.dynamic_slice_in_dim(state.sequence, state.prompt_len, spec.max_new_tokens)
    return Rollout(
        tokens=tokens,
        length=state.length,
        latents=state.latents,
        finish=state.finish,
        sequence=state.sequence,
        sequence_length=state.prompt_len + state.length,
    )


def rollout(
    config: DecoderConfig, params, spec: RolloutSpec, prompt, prompt_len, key, budget=None, response_start=None
) -> Rollout:
    """Generate up to ``spec.max_new_tokens`` tokens after ``prompt[:prompt_len]`` (one sequence, no host work).

    The caller validates lengths: ``prompt_len`` in [1, Lp] and ``prompt_len + max_new_tokens`` within the
    model's context (see :func:`nabla_jax.generation.buckets.check_lengths`)."""
    state = rollout_init(config, params, spec, prompt, prompt_len, key, budget, response_start)
    state = jax.lax.while_loop(lambda s: ~s.done, functools.partial(rollout_step, config, params, spec), state)
    return rollout_result(spec, state)


def rollout_logits(config: DecoderConfig, params, latents: jax.Array) -> jax.Array:
    """float32 logits ``[..., V]`` of rollout latents: row t is the distribution token t was sampled from."""
    return decoder.lm_logits(config, params, latents)


_traces = 0


def trace_count() -> int:
    """How many times :func:`rollout_batch` has been traced (= compiled) in this process."""
    return _traces


@functools.partial(jax.jit, static_argnums=(0, 2))
def rollout_batch(config: DecoderConfig, params, spec: RolloutSpec, prompts, prompt_lens, keys) -> Rollout:
    """:func:`rollout` vmapped over rows: prompts ``[B, Lp]``, prompt_lens ``[B]``, keys ``[B]``."""
    global _traces
    _traces += 1
    return jax.vmap(lambda p, n, k: rollout(config, params, spec, p, n, k))(prompts, prompt_lens, keys)
