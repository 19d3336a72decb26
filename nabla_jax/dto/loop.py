"""DTO as an ``(init, step)`` pair over a state pytree, run by ``lax.while_loop``.

Gradient caching: a full step runs both models forward and backward and stores ``g = dL/dy``; while no argmax of a
moving position changes, the next steps reuse g (exact, not an approximation) and run no model. :func:`dto_seed`
starts a run with the cache filled by the gradient selector's pass.

Invariants: one ``lax.cond`` per batch decides whether the models run, and every row's variables are exactly those
of its own single-problem run. Counters are per row. A non-finite loss or gradient stops only that row
(``nonfinite_step``), its variables kept at their last finite values. Why one cond per batch, and what the counters
count: docs/design-notes.md.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nabla_jax.dto.config import DTOConfig
from nabla_jax.dto.loss import loss_and_onehot_grad
from nabla_jax.dto.models import ModelPair
from nabla_jax.dto.optimizer import make_optimizer
from nabla_jax.dto.prefix_cache import PrefixCache
from nabla_jax.dto.problem import DTOProblem
from nabla_jax.dto.variables import all_onehots, moving_onehots, split_init, to_logits
from nabla_jax.generation.sampling import first_argmax
from nabla_jax.rows import add_row_axis, drop_row_axis, when_any_fits, where_rows


class DTOState(NamedTuple):
    """One problem's DTO state (a leading batch axis on every leaf in the batched functions)."""

    variables: jax.Array  # [M, X] float32: the moving positions' logits (X = V) or latents (X = d)
    opt_state: Any  # optax state of ``variables`` (float32)
    token_ids: jax.Array  # [A] int32: current argmax of every ahead position
    grad_y: jax.Array  # [M, V] float32 cached dL/dy of the moving positions ([0, V] without caching)
    cache_valid: jax.Array  # () bool
    seeded: jax.Array  # () bool: the cached gradient is the next step's, computed before DTO began (dto_seed)
    step: jax.Array  # () int32: steps taken
    full_steps: jax.Array  # () int32: steps that needed the models (by this problem's own need)
    cached_steps: jax.Array  # () int32: steps served from the cached gradient
    executed_full_steps: jax.Array  # () int32: steps on which the models actually ran for this row
    loss: jax.Array  # () float32: loss at the current one-hots (the last full step's)
    loglik: jax.Array  # () float32: sum_i y_i . log p(.|y_<i) at the last full step
    reward: jax.Array  # () float32: raw reward at the last full step
    loss_trace: jax.Array  # [T] float32: loss of the one-hots at each step (NaN where no step ran)
    relaxed_trace: jax.Array  # [T] float32: loss + <g, softmax(z/tau) - onehot> before each update (noise-free)
    nonfinite_step: jax.Array  # () int32: first step with a non-finite loss or gradient, -1 if none
    key: jax.Array  # uint32 [2] PRNG key for Gumbel noise (unused unless config.gumbel)


def dto_init(
    models: ModelPair, config: DTOConfig, problem: DTOProblem, init: jax.Array, key: jax.Array | None = None
) -> DTOState:
    """State for one problem from the init variables of every ahead position (``[A, V]`` or ``[A, d]``)."""
    variables, token_ids = split_init(models, config, init)
    m = variables.shape[0]
    nan_trace = jnp.full((config.max_iters,), jnp.nan, jnp.float32)
    zero_i, zero_f = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
    return DTOState(
        variables=variables,
        opt_state=make_optimizer(config).init(variables),
        token_ids=token_ids,
        grad_y=jnp.zeros((m if config.grad_caching else 0, models.vocab_size), jnp.float32),
        cache_valid=jnp.zeros((), bool),
        seeded=jnp.zeros((), bool),
        step=zero_i,
        full_steps=zero_i,
        cached_steps=zero_i,
        executed_full_steps=zero_i,
        loss=zero_f,
        loglik=zero_f,
        reward=zero_f,
        loss_trace=nan_trace,
        relaxed_trace=nan_trace,
        nonfinite_step=jnp.full((), -1, jnp.int32),
        key=jax.random.PRNGKey(0) if key is None else key,
    )


def seeding_applies(config: DTOConfig) -> bool:
    """Whether :func:`dto_seed` can fill a run's first step: with gradient caching, and without Gumbel noise (whose
    first one-hots differ from the rollout's)."""
    return config.grad_caching and not config.gumbel


def dto_seed(config: DTOConfig, state: DTOState, loss, loglik, reward, grad_y, use) -> DTOState:
    """One problem's fresh state with its first full step's results already known (``use``, traced): the loss, its
    parts and ``dL/dy [A, V]`` at the init one-hots, as the selection probe computes them on the same problem and
    prefix cache (:func:`nabla_jax.dto.probes.selection_probes`). That step then runs no model; it still counts as
    a full step (the models' work was done, by the probe), not as an executed one. Where seeding does not apply
    (:func:`seeding_applies`) the state is returned unchanged."""
    if not seeding_applies(config):
        return state
    m = state.grad_y.shape[0]
    seeded = state._replace(
        grad_y=grad_y[:m].astype(jnp.float32), cache_valid=jnp.ones((), bool), seeded=jnp.ones((), bool),
        loss=loss, loglik=loglik, reward=reward,
    )
    return jax.tree.map(lambda a, b: jnp.where(use, a, b), seeded, state)


def is_active(config: DTOConfig, state: DTOState) -> jax.Array:
    return (state.step < config.max_iters) & (state.nonfinite_step < 0)


def dto_step(
    models: ModelPair,
    config: DTOConfig,
    problems: DTOProblem,
    caches: PrefixCache | None,
    state: DTOState,
    sizes: tuple[int, ...] | None = None,
) -> DTOState:
    """One DTO iteration for a batch (leading axis B on problems, caches and state). ``caches`` None re-runs the
    whole sequence every step instead of reusing the prefix keys/values. ``sizes`` (ascending, static): the ahead
    buffers a full step may run over, the smallest that holds the rows' ahead tokens chosen per step
    (:func:`nabla_jax.dto.prefix_cache.ahead_sizes`); default the whole buffer."""
    m = state.variables.shape[1]
    active = is_active(config, state)
    keys = jax.vmap(jax.random.fold_in)(state.key, state.step)
    need_full = active & (~state.cache_valid | state.seeded) if config.grad_caching else active
    run_full = need_full & ~state.seeded  # a seeded row's full step was run before DTO began

    def full_step(size):
        def row(problem, cache, variables, token_ids, key):
            y = all_onehots(moving_onehots(models, config, variables, key), token_ids)
            loss, parts, grad = loss_and_onehot_grad(models, config, problem, cache, y, size)
            return loss, parts.loglik, parts.reward, grad[:m]

        return jax.vmap(row)(problems, caches, state.variables, state.token_ids, keys)

    sizes = sizes or (state.token_ids.shape[1],)
    if config.grad_caching:
        cached = (state.loss, state.loglik, state.reward, state.grad_y)
        new = when_any_fits(run_full, problems.ahead_len, sizes, full_step)
        loss, loglik, reward, grad_y = where_rows(run_full, tuple(new), cached)
        executed = active & jnp.any(run_full)
    else:
        loss, loglik, reward, grad_y = when_any_fits(active, problems.ahead_len, sizes, full_step)
        executed = active

    def pull_back(variables, key, g):
        _, vjp = jax.vjp(lambda v: moving_onehots(models, config, v, key), variables)
        return vjp(g)[0]

    grads = jax.vmap(pull_back)(state.variables, keys, grad_y)
    z = jax.vmap(lambda v: to_logits(models, config, v))(state.variables)
    hard = jax.nn.one_hot(state.token_ids[:, :m], z.shape[-1], dtype=jnp.float32)
    relaxed = loss + jnp.sum(grad_y * (jax.nn.softmax(z / config.tau, axis=-1) - hard), axis=(1, 2))

    updates, opt_state = jax.vmap(make_optimizer(config).update)(grads, state.opt_state, state.variables)
    variables = optax.apply_updates(state.variables, updates)
    finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grads), axis=(1, 2))
    ok = active & finite
    variables = where_rows(ok, variables, state.variables)
    opt_state = where_rows(ok, opt_state, state.opt_state)

    moving_ids = first_argmax(jax.vmap(lambda v: to_logits(models, config, v))(variables))
    changed = jnp.any(moving_ids != state.token_ids[:, :m], axis=1)
    at_step = active[:, None] & (jnp.arange(config.max_iters)[None] == state.step[:, None])
    return DTOState(
        variables=variables,
        opt_state=opt_state,
        token_ids=state.token_ids.at[:, :m].set(moving_ids),
        grad_y=grad_y if config.grad_caching else state.grad_y,
        cache_valid=jnp.where(ok, ~changed, state.cache_valid) if config.grad_caching else state.cache_valid,
        seeded=state.seeded & ~active,
        step=state.step + ok.astype(jnp.int32),
        full_steps=state.full_steps + need_full.astype(jnp.int32),
        cached_steps=state.cached_steps + (active & ~need_full).astype(jnp.int32),
        executed_full_steps=state.executed_full_steps + executed.astype(jnp.int32),
        loss=jnp.where(active, loss, state.loss),
        loglik=jnp.where(active, loglik, state.loglik),
        reward=jnp.where(active, reward, state.reward),
        loss_trace=jnp.where(at_step, loss[:, None], state.loss_trace),
        relaxed_trace=jnp.where(at_step, relaxed[:, None], state.relaxed_trace),
        nonfinite_step=jnp.where(active & ~finite, state.step, state.nonfinite_step),
        key=state.key,
    )


def dto_run(
    models: ModelPair,
    config: DTOConfig,
    problems: DTOProblem,
    caches: PrefixCache | None,
    state: DTOState,
    sizes: tuple[int, ...] | None = None,
) -> DTOState:
    """Step a batch until every row has taken ``max_iters`` steps or stopped on a non-finite value (``sizes``: see
    :func:`dto_step`)."""
    return jax.lax.while_loop(
        lambda s: jnp.any(is_active(config, s)),
        lambda s: dto_step(models, config, problems, caches, s, sizes),
        state,
    )


def dto_step_single(models, config, problem, cache, state) -> DTOState:
    """:func:`dto_step` for one problem (no batch axis); vmap it to batch with a per-row select."""
    return drop_row_axis(dto_step(models, config, add_row_axis(problem), add_row_axis(cache), add_row_axis(state)))

