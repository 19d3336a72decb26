"""Continuous batching for generation: R row slots decode a device-side queue of prompts inside one compiled loop.
A row whose continuation has ended writes it to the results and becomes free; free rows take the next prompts as soon
as a chunk of them (a quarter of the slots) is free, inside the same loop, so no row waits for the longest
continuation of its batch. Rows keep their own step counters (:mod:`~nabla_jax.generation.rollouts`), so a prompt
loaded at any iteration gets a batch of one's continuation. ``(init, step)``: :func:`queue_init`,
:func:`queue_step`, run by ``lax.while_loop`` in :func:`rollout_queue`; :func:`queue_rollouts` is the host side
(length buckets, one queue each). Why refills wait for a chunk: docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

import nabla_jax.program_cache as program_cache
from nabla_jax.generation.buckets import bucket_length, chunks, pad_prompts, queue_length, slot_rows
from nabla_jax.generation.rollouts import (
    RolloutSpec,
    RolloutState,
    rollout_batch,
    rollout_init,
    rollout_step,
    split_layers,
)
from nabla_jax.models import decoder
from nabla_jax.models.config import DecoderConfig
from nabla_jax.rows import where_rows

FREE = -1  # row_prompt of a row slot without a prompt


class Prompts(NamedTuple):
    """The queue ``[Q]``: right-padded prompt buffers, their lengths and sampling keys."""

    ids: jax.Array  # [Q, Lp] int32
    length: jax.Array  # [Q] int32
    key: jax.Array  # [Q]


class QueueResult(NamedTuple):
    """Continuations by queue index (entries past the queue's count are zeros)."""

    tokens: jax.Array  # [Q, N] int32, pad_id after length
    length: jax.Array  # [Q] int32, the EOS / stop tokens included
    finish: jax.Array  # [Q] int32 FINISH_*


class QueueState(NamedTuple):
    rows: RolloutState  # [R] row slots, one step counter per row
    row_prompt: jax.Array  # [R] int32: queue index of each row's prompt, FREE when none
    next_prompt: jax.Array  # () int32: the first queue index not yet started
    results: QueueResult  # [Q]


def _take(prompts: Prompts, index: jax.Array) -> Prompts:
    return jax.tree.map(lambda x: x[jnp.clip(index, 0, x.shape[0] - 1)], prompts)


def _start(config: DecoderConfig, params, spec: RolloutSpec, prompts: Prompts) -> RolloutState:
    """Prefill rows and sample their first tokens, with one step counter per row."""
    state = rollout_init(config, params, spec, prompts.ids, prompts.length, prompts.key)
    return state._replace(step=jnp.broadcast_to(state.step, prompts.length.shape))


def queue_init(config: DecoderConfig, params, spec: RolloutSpec, prompts: Prompts, rows: int) -> QueueState:
    """Every row free; nothing decoded yet."""
    first = _take(prompts, jnp.arange(rows))
    shapes = jax.eval_shape(lambda p: _start(config, params, spec, p), first)._replace(key=first.key)  # keys: no zeros
    zeros = lambda s: jnp.zeros(s.shape, s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s  # noqa: E731
    idle = jax.tree.map(zeros, shapes)._replace(done=jnp.ones((rows,), bool))
    queue = prompts.length.shape[0]
    results = QueueResult(
        jnp.full((queue, spec.max_new_tokens), spec.pad_id, jnp.int32),
        jnp.zeros((queue,), jnp.int32),
        jnp.zeros((queue,), jnp.int32),
    )
    return QueueState(idle, jnp.full((rows,), FREE, jnp.int32), jnp.zeros((), jnp.int32), results)


def retire(spec: RolloutSpec, state: QueueState) -> QueueState:
    """Rows whose continuation has ended write it to the results and become free."""
    rows = state.rows
    finished = rows.done & (state.row_prompt != FREE)
    target = jnp.where(finished, state.row_prompt, state.results.length.shape[0])  # out of range: dropped
    take = jax.vmap(lambda seq, start: jax.lax.dynamic_slice_in_dim(seq, start, spec.max_new_tokens))
    done = QueueResult(take(rows.sequence, rows.prompt_len), rows.length, rows.finish)
    results = jax.tree.map(lambda r, x: r.at[target].set(x, mode="drop"), state.results, done)
    return state._replace(results=results, row_prompt=jnp.where(finished, FREE, state.row_prompt))


def load(config: DecoderConfig, params, spec: RolloutSpec, prompts: Prompts, count, chunk: int, state: QueueState,
         allowed=True) -> QueueState:
    """Free rows take the next prompts of the queue (the first ``count`` entries are real), if ``allowed``. The
    loading rows are gathered and prefilled ``chunk`` at a time, as many chunks as they need; when every row loads
    (the first fill) they are prefilled all at once."""
    free = state.row_prompt == FREE
    candidate = state.next_prompt + jnp.cumsum(free) - 1
    loading = free & (candidate < count) & allowed
    loads = jnp.sum(loading, dtype=jnp.int32)
    order = jnp.argsort(~loading, stable=True)  # the loading rows first, in row order
    slots = state.rows.done.shape[0]
    padded = jnp.concatenate([order, jnp.full((chunk,), slots, order.dtype)])

    def load_chunk(i, rows: RolloutState) -> RolloutState:
        picked = jax.lax.dynamic_slice_in_dim(padded, i * chunk, chunk)
        real = i * chunk + jnp.arange(chunk) < loads
        started = _start(config, params, spec, _take(prompts, candidate[jnp.minimum(picked, slots - 1)]))
        target = jnp.where(real, picked, slots)  # out of range: dropped
        return jax.tree.map(lambda r, x: r.at[target].set(x, mode="drop"), rows, started)

    def load_all(rows: RolloutState) -> RolloutState:
        return where_rows(loading, _start(config, params, spec, _take(prompts, candidate)), rows)

    def load_chunks(rows: RolloutState) -> RolloutState:
        return jax.lax.fori_loop(0, (loads + chunk - 1) // chunk, load_chunk, rows)

    rows = jax.lax.cond(jnp.all(loading), load_all, load_chunks, state.rows)
    return state._replace(
        rows=rows, row_prompt=jnp.where(loading, candidate, state.row_prompt), next_prompt=state.next_prompt + loads
    )


def queue_step(config: DecoderConfig, params, layers, spec: RolloutSpec, prompts: Prompts, count, chunk: int,
               state: QueueState) -> QueueState:
    """Retire ended rows; refill free rows once a chunk's worth of them is free (or the rest of the queue fits, or
    no row is running), so that every prefill is a full chunk; then one decode step for every row (skipped when no
    row is active). Most iterations do only the decode step."""
    ended = state.rows.done & (state.row_prompt != FREE)
    free = jnp.sum(state.row_prompt == FREE) + jnp.sum(ended)
    remaining = count - state.next_prompt
    allowed = (remaining > 0) & ((free >= jnp.minimum(chunk, remaining)) | jnp.all(state.rows.done))
    refill = lambda s: load(config, params, spec, prompts, count, chunk, retire(spec, s), allowed)  # noqa: E731
    with jax.named_scope("refill"):
        state = jax.lax.cond(jnp.any(ended) | allowed, refill, lambda s: s, state)
    step = functools.partial(rollout_step, config, params, layers, spec)
    rows = jax.lax.cond(jnp.any(~state.rows.done), step, lambda r: r, state.rows)
    return state._replace(rows=rows)


def queue_pending(count, state: QueueState) -> jax.Array:
    return jnp.any(state.row_prompt != FREE) | (state.next_prompt < count)


def load_chunk_rows(rows: int) -> int:
    """Rows prefilled together when free rows are refilled: a quarter of the slots (at least one), so a refill of a
    few rows does not prefill the whole batch."""
    return max(1, rows // 4)  # on the testbed at 8 and 32 rows, 1 and 16 are slower (docs/design-notes.md)



@functools.partial(jax.jit, static_argnames=("config", "spec", "rows"))
def rollout_queue(config: DecoderConfig, params, spec: RolloutSpec, prompts: Prompts, count, rows: int,
                  layers=None) -> QueueResult:
    """Continuations of the first ``count`` prompts of the queue ``prompts [Q]``, decoded by ``rows`` row slots;
    ``layers``: the params split by :data:`~nabla_jax.generation.rollouts.split_layers` (None splits them inside)."""
    layers = decoder.split_layers(params) if layers is None else layers
    step = functools.partial(queue_step, config, params, layers, spec, prompts, count, load_chunk_rows(rows))
    start = queue_init(config, params, spec, prompts, rows)
    state = jax.lax.while_loop(functools.partial(queue_pending, count), step, start)
    return state.results


program_cache.register_results(QueueResult)


def _length_buckets(config: DecoderConfig, spec: RolloutSpec, prompt_ids: Sequence[Sequence[int]]) -> list[int]:
    """Each prompt's buffer length: its length bucket, within the room ``max_new_tokens`` leaves."""
    longest = config.max_position_embeddings - spec.max_new_tokens
    return [bucket_length(len(ids), maximum=longest) for ids in prompt_ids]


def _outputs(tokens, counts, finish, rows) -> list[tuple[list[int], int]]:
    return [([int(t) for t in tokens[r, : counts[r]]], int(finish[r])) for r in rows]


def batch_rollouts(config: DecoderConfig, params, spec: RolloutSpec, prompt_ids: Sequence[Sequence[int]], keys,
                   batch_size: int, place: Callable | None = None, row_count: Callable[[int], int] | None = None
                   ) -> list[tuple[list[int], int]]:
    """:func:`queue_rollouts` in fixed batches instead (each runs until its longest row ends; the same outputs):
    prompts grouped by length bucket, cut into chunks of ``batch_size``, each padded to a power-of-two row count."""
    out: list[tuple[list[int], int] | None] = [None] * len(prompt_ids)
    layers = split_layers(params)  # once for every batch
    for length, chunk, padded in chunks(_length_buckets(config, spec, prompt_ids), batch_size, row_count):
        ids, lens = pad_prompts([prompt_ids[i] for i in padded], length, spec.pad_id)
        arrays = (jnp.asarray(ids), jnp.asarray(lens), keys[jnp.asarray(padded)])
        result = rollout_batch(config, params, spec, *(place(*arrays) if place is not None else arrays), layers)
        fetched = jax.device_get((result.tokens, result.length, result.finish))
        for i, output in zip(chunk, _outputs(*fetched, range(len(chunk)))):
            out[i] = output
    return out


def queue_rollouts(config: DecoderConfig, params, spec: RolloutSpec, prompt_ids: Sequence[Sequence[int]], keys,
                   batch_size: int, place: Callable | None = None, row_count: Callable[[int], int] | None = None
                   ) -> list[tuple[list[int], int]]:
    """``(generated ids, finish code)`` per prompt: prompts grouped by length bucket, each bucket one queue padded to
    :func:`queue_length` entries (a traced count of real entries, so compilations stay few) and decoded by
    ``batch_size`` row slots (fewer for a short queue: ``row_count(n)`` slots for n prompts, by default n rounded
    up to a power of two). ``keys [P]`` are the prompts' sampling keys; ``place`` puts the queue's arrays on devices."""
    spec = dataclasses.replace(spec, keep_latents=False)  # the results are tokens only
    out: list[tuple[list[int], int] | None] = [None] * len(prompt_ids)
    whole_buckets = chunks(_length_buckets(config, spec, prompt_ids), len(prompt_ids), row_count=lambda n: n)
    layers = split_layers(params)  # once for every bucket
    for length, members, _ in whole_buckets:
        queue = queue_length(len(members))
        padded = members + [members[0]] * (queue - len(members))
        ids, lens = pad_prompts([prompt_ids[i] for i in padded], length, spec.pad_id)
        arrays = (jnp.asarray(ids), jnp.asarray(lens), keys[jnp.asarray(padded)])
        if place is not None:
            arrays = place(*arrays)
        rows = row_count(min(len(members), batch_size)) if row_count else slot_rows(len(members), batch_size)
        static = dict(config=config, spec=spec, rows=rows)
        result = program_cache.call(rollout_queue, static, params=params, prompts=Prompts(*arrays),
                                    count=jnp.int32(len(members)), layers=layers)
        for i, output in zip(members, _outputs(*jax.device_get(result), range(len(members)))):
            out[i] = output
    return out
