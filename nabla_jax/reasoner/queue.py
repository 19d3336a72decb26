"""Continuous batching for the ∇-Reasoner: R row slots decode a device-side queue of problems inside one compiled
loop. A row whose problem has finished hands its final state to the results and takes the next problem in the
same iteration, so no row waits for the slowest problem of a batch (the plain batched loop, :func:`decode_batch`,
runs every batch until its last problem ends).

A problem's result never depends on its row, its neighbours or when it started: every piece of an iteration is a
pure function of one problem's state (its randomness comes from its own key), so the results equal those of a batch
of one. ``(init, step)``: :func:`queue_init`, :func:`queue_step`, run by ``lax.while_loop`` in :func:`decode_queue`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.dto.models import ModelPair
from nabla_jax.generation.rollouts import RolloutSpec
from nabla_jax.reasoner.config import NablaConfig
from nabla_jax.reasoner.loop import Kernel, make_kernel, nabla_step, start_rows, without_prefix
from nabla_jax.reasoner.problem import NablaProblem
from nabla_jax.reasoner.state import NablaState
from nabla_jax.rows import when_any_rows, where_rows

FREE = -1  # row_problem of a row slot without a problem


class QueueState(NamedTuple):
    rows: NablaState  # [R]: the problems being decoded
    row_problem: jax.Array  # [R] int32: queue index of each row's problem, FREE when none
    next_problem: jax.Array  # () int32: the first queue index not yet started
    results: NablaState  # [Q]: final states, by queue index (:func:`without_prefix`: no prefix caches)


def _take(problems: NablaProblem, index: jax.Array) -> NablaProblem:
    return jax.tree.map(lambda x: x[jnp.clip(index, 0, x.shape[0] - 1)], problems)


def queue_init(k: Kernel, problems: NablaProblem, rows: int) -> QueueState:
    """Every row free; nothing decoded yet."""
    shapes = jax.eval_shape(lambda p: start_rows(k, p, jnp.ones((rows,), bool)), _take(problems, jnp.arange(rows)))
    idle = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    idle = idle._replace(done=jnp.ones((rows,), bool))
    queue = problems.prompt_len.shape[0]
    results = jax.tree.map(lambda x: jnp.zeros((queue,) + x.shape[1:], x.dtype), without_prefix(idle))
    return QueueState(idle, jnp.full((rows,), FREE, jnp.int32), jnp.zeros((), jnp.int32), results)


def retire(state: QueueState) -> QueueState:
    """Rows whose problem has finished write its final state to the results and become free."""
    finished = state.rows.done & (state.row_problem != FREE)
    target = jnp.where(finished, state.row_problem, state.results.done.shape[0])  # out of range: dropped
    results = jax.tree.map(lambda r, x: r.at[target].set(x, mode="drop"), state.results, without_prefix(state.rows))
    return state._replace(results=results, row_problem=jnp.where(finished, FREE, state.row_problem))


def load(k: Kernel, problems: NablaProblem, count, state: QueueState) -> QueueState:
    """Free rows take the next problems of the queue (the first ``count`` entries are real) and roll them out."""
    free = state.row_problem == FREE
    candidate = state.next_problem + jnp.cumsum(free) - 1
    loading = free & (candidate < count)
    row_problem = jnp.where(loading, candidate, state.row_problem)
    started = when_any_rows(loading, functools.partial(start_rows, k), k.chunk, _take(problems, row_problem), loading)
    return state._replace(
        rows=where_rows(loading, started, state.rows),
        row_problem=row_problem,
        next_problem=state.next_problem + jnp.sum(loading, dtype=jnp.int32),
    )


def queue_step(k: Kernel, problems: NablaProblem, count, state: QueueState) -> QueueState:
    """Retire finished rows, refill free ones, then one ∇-Reasoner iteration for every row."""
    with jax.named_scope("refill"):
        state = load(k, problems, count, retire(state))
    return state._replace(rows=nabla_step(k, _take(problems, state.row_problem), state.rows))


def queue_pending(count, state: QueueState) -> jax.Array:
    return jnp.any(state.row_problem != FREE) | (state.next_problem < count)



@functools.partial(jax.jit, static_argnames=("cfg", "spec", "rm_pad", "rows"))
def decode_queue(
    models: ModelPair, cfg: NablaConfig, spec: RolloutSpec, rm_pad: int, problems: NablaProblem, count, rows: int
) -> NablaState:
    """Decode the first ``count`` problems of the queue ``problems [Q]`` with ``rows`` row slots; returns their
    final states ``[Q]`` (entries past ``count`` are zeros)."""
    kernel = make_kernel(models, cfg, spec, rm_pad, rows)
    state = jax.lax.while_loop(
        functools.partial(queue_pending, count),
        functools.partial(queue_step, kernel, problems, count),
        queue_init(kernel, problems, rows),
    )
    return state.results
