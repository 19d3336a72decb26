"""Reward-guided step-level search over a batch of problems: ``(init, step)`` over a fixed-shape state, run by
``lax.while_loop`` inside one ``jit``.

Each step extends every live row of a problem (``n`` rows: beams or particles) by one reasoning step, a rollout
that ends at a step-end token, an end token or the token budget; scores each extended row with the PRM (its last
step's value and its aggregate reward); then selects (:mod:`nabla_jax.search.select`). Invariants: a problem's
rows never read another problem's; row ``j``'s rollout at response length ``L`` is keyed by ``(problem key, j, L)``
and a resampling step by ``(problem key, step)``, so results do not depend on the batch; every pass is counted.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.dto.models import ModelPair
from nabla_jax.generation.rollouts import FINISH_NONFINITE, RolloutSpec, rollout_rows
from nabla_jax.models import decoder
from nabla_jax.models.flops import decode_flops, forward_flops
from nabla_jax.reasoner.problem import NablaProblem, response_step_reward
from nabla_jax.search import select
from nabla_jax.search.config import PARTICLES, SearchConfig

ROLLOUT_STREAM, RESAMPLE_STREAM = 0, 1
ROW_FIELDS = ("sequence", "length", "done", "last", "score")  # what a row carries when it is copied to another


class Kernel(NamedTuple):
    """The frozen models and static settings of one search, bundled once."""

    models: ModelPair
    config: SearchConfig
    spec: RolloutSpec  # its eos_ids hold the end tokens and the step-end tokens: a rollout is one step
    end_ids: tuple[int, ...]  # the tokens that end a response
    rm_pad: int
    lm_layers: tuple


class Costs(NamedTuple):
    """Per problem ``[P]`` float32, counted as :mod:`nabla_jax.evaluation.accounting` counts them."""

    official_calls: jax.Array
    full_calls: jax.Array
    flops: jax.Array
    generated_tokens: jax.Array
    rollouts: jax.Array
    reward_calls: jax.Array


class Best(NamedTuple):
    """Per problem: the best finished row set aside so far (beam search and dvts)."""

    sequence: jax.Array  # [P, S]
    length: jax.Array  # [P]
    score: jax.Array  # [P]
    found: jax.Array  # [P] bool


class SearchState(NamedTuple):
    sequence: jax.Array  # [P, N, S] int32: prompt then response, pad after
    length: jax.Array  # [P, N] int32: response tokens
    done: jax.Array  # [P, N] bool: the response ended (an end token, the budget, or non-finite logits)
    alive: jax.Array  # [P, N] bool: still searched (beam and dvts prune rows; particles stay)
    last: jax.Array  # [P, N] float32: the reward's value at the response's last step
    score: jax.Array  # [P, N] float32: the response's reward (the kind's aggregate over its steps)
    best: Best
    step: jax.Array  # [P] int32: steps taken
    running: jax.Array  # [P] bool
    cost: Costs
    nonfinite: jax.Array  # [P] int32: rollouts that met NaN/inf logits


def make_kernel(models: ModelPair, config: SearchConfig, spec: RolloutSpec, end_ids: tuple, rm_pad: int) -> Kernel:
    return Kernel(models, config, spec, end_ids, rm_pad, decoder.split_layers(models.lm_params))


def search_init(k: Kernel, problems: NablaProblem) -> SearchState:
    p, s, n = problems.prompt_ids.shape[0], problems.prompt_ids.shape[1], k.config.n
    zeros = jnp.zeros((p, n), jnp.float32)
    cost = Costs(*(jnp.zeros((p,), jnp.float32) for _ in Costs._fields))
    best = Best(jnp.zeros((p, s), jnp.int32), jnp.zeros((p,), jnp.int32), jnp.full((p,), -jnp.inf, jnp.float32),
                jnp.zeros((p,), bool))
    return SearchState(
        sequence=jnp.broadcast_to(problems.prompt_ids[:, None], (p, n, s)).astype(jnp.int32),
        length=jnp.zeros((p, n), jnp.int32), done=jnp.zeros((p, n), bool), alive=jnp.ones((p, n), bool),
        last=zeros, score=zeros, best=best, step=jnp.zeros((p,), jnp.int32), running=jnp.ones((p,), bool),
        cost=cost, nonfinite=jnp.zeros((p,), jnp.int32),
    )


def row_keys(problems: NablaProblem, length: jax.Array) -> jax.Array:
    """``[P, N]`` rollout keys: row j at response length L draws from ``(problem key, j, L)``."""
    def one(key, lengths):
        stream = jax.random.fold_in(key, ROLLOUT_STREAM)
        return jax.vmap(lambda j, n: jax.random.fold_in(jax.random.fold_in(stream, j), n))(
            jnp.arange(lengths.shape[0]), lengths)
    return jax.vmap(one)(problems.key, length)


def extend(k: Kernel, problems: NablaProblem, state: SearchState, active: jax.Array):
    """One step of every ``active [P, N]`` row: ``(sequence, length, done, rollout costs, generated, nonfinite)``."""
    p, n, s = state.sequence.shape
    prompt_len = problems.prompt_len[:, None]
    prefix_len = prompt_len + state.length
    budgets = jnp.where(active, k.config.max_new_tokens - state.length, 0)
    flat = lambda x: x.reshape((p * n,) + x.shape[2:])
    out = rollout_rows(k.models.lm_config, k.models.lm_params, k.spec, flat(state.sequence), flat(prefix_len),
                       flat(row_keys(problems, state.length)), flat(budgets), flat(prefix_len), layers=k.lm_layers)
    generated = out.length.reshape(p, n)
    sequence = out.sequence[:, :s].reshape(p, n, s)
    length = state.length + generated
    last_token = jnp.take_along_axis(sequence, jnp.maximum(prompt_len + length - 1, 0)[..., None], axis=2)[..., 0]
    ended = jnp.isin(last_token, jnp.asarray(k.end_ids or (-1,), jnp.int32)) & (generated > 0)
    broken = out.finish.reshape(p, n) == FINISH_NONFINITE
    ended = ended | broken | (length >= k.config.max_new_tokens)
    flops = jax.vmap(jax.vmap(lambda a, g: decode_flops(k.models.lm_config, a, g)))(prefix_len, generated)
    return (jnp.where(active[..., None], sequence, state.sequence), jnp.where(active, length, state.length),
            state.done | (active & ended), flops, generated, jnp.sum(active & broken, axis=1))


def score_rows(k: Kernel, problems: NablaProblem, sequence, length):
    """``(last step's value, reward)`` of every row ``[P, N]``."""
    one = lambda problem, seq, n: response_step_reward(k.models, problem, seq, n, k.rm_pad, k.config.max_new_tokens)
    return jax.vmap(lambda problem, seqs, lens: jax.vmap(lambda a, b: one(problem, a, b))(seqs, lens))(
        problems, sequence, length)


def count(k: Kernel, problems: NablaProblem, cost: Costs, active, prefix_flops, generated, length) -> Costs:
    """``cost`` plus the rollouts and reward passes of the ``active`` rows."""
    reward_slots = jax.vmap(lambda problem, n: k.models.reward_kind.input_slots(
        problem.rm_prefix_len, n, problem.rm_postfix_len))(problems, length)
    reward_flops = jax.vmap(jax.vmap(lambda slots: forward_flops(k.models.rm_config, slots, 0)))(reward_slots)
    rows = active.astype(jnp.float32)
    tokens = jnp.sum(jnp.where(active, generated, 0), axis=1).astype(jnp.float32)
    calls = jnp.sum(rows, axis=1)
    return Costs(
        official_calls=cost.official_calls + tokens + calls,
        full_calls=cost.full_calls + tokens + 2 * calls,
        flops=cost.flops + jnp.sum(rows * (prefix_flops + reward_flops), axis=1),
        generated_tokens=cost.generated_tokens + tokens,
        rollouts=cost.rollouts + calls,
        reward_calls=cost.reward_calls + calls,
    )


def search_step(k: Kernel, problems: NablaProblem, state: SearchState) -> SearchState:
    active = state.alive & ~state.done & state.running[:, None]
    sequence, length, done, flops, generated, broken = extend(k, problems, state, active)
    last, score = score_rows(k, problems, sequence, length)
    last, score = jnp.where(active, last, state.last), jnp.where(active, score, state.score)
    cost = count(k, problems, state.cost, active, flops, generated, length)
    moved = state._replace(sequence=sequence, length=length, done=done, last=last, score=score, cost=cost,
                           nonfinite=state.nonfinite + broken)
    if k.config.method == PARTICLES:
        keys = jax.vmap(lambda key, t: jax.random.fold_in(jax.random.fold_in(key, RESAMPLE_STREAM), t))(
            problems.key, state.step)
        source = jax.vmap(functools.partial(select.resample, k.config))(last, keys)
        alive = moved.alive
    else:
        moved = moved._replace(best=select.set_aside(moved.best, sequence, length, score, active & done))
        source, alive = jax.vmap(functools.partial(select.prune, k.config))(last, active & ~done)
    chosen = gather_rows(moved, source)._replace(alive=alive)
    running = state.running
    keep = lambda new, old: jnp.where(running.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
    rows = {name: keep(getattr(chosen, name), getattr(state, name)) for name in ROW_FIELDS + ("alive",)}
    step = state.step + running
    still = jnp.any(rows["alive"] & ~rows["done"], axis=1) & (step < k.config.steps)
    return chosen._replace(**rows, step=step, running=running & still)


def gather_rows(state: SearchState, source: jax.Array) -> SearchState:
    """``state`` with each problem's rows replaced by its rows ``source [P, N]``."""
    take = lambda x: jnp.take_along_axis(x, source.reshape(source.shape + (1,) * (x.ndim - 2)), axis=1)  # noqa: E731
    return state._replace(**{name: take(getattr(state, name)) for name in ROW_FIELDS})


def search_run(k: Kernel, problems: NablaProblem, state: SearchState) -> SearchState:
    return jax.lax.while_loop(lambda s: jnp.any(s.running), lambda s: search_step(k, problems, s), state)


class Answer(NamedTuple):
    sequence: jax.Array  # [P, S]
    length: jax.Array  # [P]
    score: jax.Array  # [P]


def final_answer(k: Kernel, state: SearchState) -> Answer:
    """Per problem: the best finished row set aside (beam, dvts), else the best-rewarded row among those still
    searched (every particle, for particle filtering)."""
    candidates = jnp.where(state.alive, state.score, -jnp.inf)
    row = jnp.argmax(candidates, axis=1)
    pick = lambda x: jnp.take_along_axis(x, row.reshape((-1,) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
    sequence, length, score = pick(state.sequence), pick(state.length), pick(state.score)
    found = state.best.found
    return Answer(jnp.where(found[:, None], state.best.sequence, sequence), jnp.where(found, state.best.length, length),
                  jnp.where(found, state.best.score, score))


@functools.partial(jax.jit, static_argnames=("config", "spec", "end_ids", "rm_pad"))
def search_batch(models: ModelPair, config: SearchConfig, spec: RolloutSpec, end_ids: tuple, rm_pad: int,
                 problems: NablaProblem) -> tuple[SearchState, Answer]:
    """Search every problem of the batch ``problems [P]`` to the end in one compiled program."""
    kernel = make_kernel(models, config, spec, end_ids, rm_pad)
    state = search_run(kernel, problems, search_init(kernel, problems))
    return state, final_answer(kernel, state)
