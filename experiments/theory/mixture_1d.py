"""A non-Gaussian 1-D problem (TC2, TC5): a Gaussian-mixture prior and a Gaussian-bump reward.

The bump sits on the prior's less likely mode, so ``rho* ∝ pi exp(lambda r)`` moves mass between modes and the
flow has to carry it over the barrier between them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from experiments.theory.compilation import jit


class MixtureProblem(NamedTuple):
    weights: jax.Array  # (k,)
    means: jax.Array  # (k,)
    scales: jax.Array  # (k,)
    bump_centre: jax.Array
    bump_width: jax.Array
    reward_coeff: jax.Array


def default_problem(reward_coeff: float = 1.0) -> MixtureProblem:
    f = jnp.result_type(float)
    return MixtureProblem(
        weights=jnp.array([0.75, 0.25], f),
        means=jnp.array([-1.0, 1.0], f),
        scales=jnp.array([0.5, 0.5], f),
        bump_centre=jnp.asarray(1.0, f),
        bump_width=jnp.asarray(0.5, f),
        reward_coeff=jnp.asarray(reward_coeff, f),
    )


def log_prior(problem: MixtureProblem, x: jax.Array) -> jax.Array:
    z = (x - problem.means) / problem.scales
    log_components = jnp.log(problem.weights) - 0.5 * z**2 - jnp.log(problem.scales) - 0.5 * jnp.log(2 * jnp.pi)
    return jax.nn.logsumexp(log_components)


def reward(problem: MixtureProblem, x: jax.Array) -> jax.Array:
    return jnp.exp(-0.5 * ((x - problem.bump_centre) / problem.bump_width) ** 2)


def dto_loss(problem: MixtureProblem, x: jax.Array) -> jax.Array:
    """``L(x) = -lambda r(x) - log pi(x)`` for a scalar ``x``."""
    return -problem.reward_coeff * reward(problem, x) - log_prior(problem, x)


def dto_loss_fn(problem: MixtureProblem) -> Partial:
    return Partial(dto_loss, problem)


@jit(static_argnames="num")
def sample_prior(problem: MixtureProblem, key: jax.Array, num: int) -> jax.Array:
    key_component, key_normal = jax.random.split(key)
    component = jax.random.choice(key_component, problem.weights.shape[0], (num,), p=problem.weights)
    normal = jax.random.normal(key_normal, (num,), problem.means.dtype)
    return problem.means[component] + problem.scales[component] * normal


def local_minima(problem: MixtureProblem, grid: jax.Array) -> jax.Array:
    """Local minimisers of ``L`` located on ``grid`` and polished by Newton's method on ``L'``."""
    candidates = np.asarray(_local_minima(problem, grid))
    return jnp.asarray(candidates[~np.isnan(candidates)])


@jit(static_argnames="newton_steps")
def _local_minima(problem: MixtureProblem, grid: jax.Array, newton_steps: int = 50) -> jax.Array:
    """One entry per grid point: the polished minimiser, or ``nan`` where the grid point is not a minimum."""
    loss = jax.vmap(lambda x: dto_loss(problem, x))(grid)
    is_min = jnp.zeros_like(grid, dtype=bool).at[1:-1].set((loss[1:-1] < loss[:-2]) & (loss[1:-1] < loss[2:]))
    first = jax.grad(lambda x: dto_loss(problem, x))
    second = jax.grad(first)

    def polish(x):
        return jax.lax.fori_loop(0, newton_steps, lambda _, x: x - first(x) / second(x), x)

    return jnp.where(is_min, jax.vmap(polish)(grid), jnp.nan)
