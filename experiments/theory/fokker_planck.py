"""Conservative 1-D Fokker-Planck solver: ``d_t rho = d_x(rho d_x L) + d_xx rho`` on ``[a, b]``, reflecting walls.

Finite volumes with the Scharfetter-Gummel flux between cells ``i`` and ``i+1`` (width ``h``,
``dL = L_{i+1} - L_i``, Bernoulli function ``B(s) = s / (e^s - 1)``):

    J_{i+1/2} = -(B(-dL) rho_{i+1} - B(dL) rho_i) / h,

which vanishes exactly on ``rho_i ∝ exp(-L_i)``, so the discrete stationary state is the discrete ``rho*``.
Zero flux at the walls makes every column of the generator sum to zero (mass is conserved), and implicit Euler
keeps densities positive and the discrete free energy ``F = sum_i h rho_i (L_i + log rho_i)`` non-increasing
at any time step. The solver is an ``(init, step)`` pair over ``FokkerPlanckState``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Grid(NamedTuple):
    centres: jax.Array  # (n,)
    width: jax.Array  # cell width h


class Generator(NamedTuple):
    """Tridiagonal ``M`` with ``d rho / dt = M rho``: sub-, main and super-diagonal (LAPACK layout, padded)."""

    lower: jax.Array
    diagonal: jax.Array
    upper: jax.Array


class FokkerPlanckState(NamedTuple):
    density: jax.Array  # cell averages, sum(h * density) = 1
    time: jax.Array


def make_grid(lower: float, upper: float, num_cells: int) -> Grid:
    width = (upper - lower) / num_cells
    centres = lower + width * (jnp.arange(num_cells) + 0.5)
    return Grid(centres, jnp.asarray(width, centres.dtype))


def bernoulli(s: jax.Array) -> jax.Array:
    """``s / (e^s - 1)``, continued by its series near 0."""
    small = jnp.abs(s) < 1e-6
    safe = jnp.where(small, 1.0, s)
    return jnp.where(small, 1.0 - s / 2.0 + s**2 / 12.0, safe / jnp.expm1(safe))


def generator(potential: jax.Array, width) -> Generator:
    """Scharfetter-Gummel generator for the potential sampled at the cell centres."""
    jump = jnp.diff(potential)  # L_{i+1} - L_i at the n - 1 interior faces
    towards_right = bernoulli(jump) / width**2  # rate from cell i into cell i + 1
    towards_left = bernoulli(-jump) / width**2  # rate from cell i + 1 into cell i
    zero = jnp.zeros(1, potential.dtype)
    outflow = jnp.concatenate([towards_right, zero]) + jnp.concatenate([zero, towards_left])
    return Generator(
        lower=jnp.concatenate([zero, towards_right]),  # row i gains from cell i - 1
        diagonal=-outflow,
        upper=jnp.concatenate([towards_left, zero]),  # row i gains from cell i + 1
    )


def apply_generator(gen: Generator, density: jax.Array) -> jax.Array:
    return (gen.diagonal * density + gen.lower * jnp.roll(density, 1) + gen.upper * jnp.roll(density, -1))


def implicit_euler_solver(potential: jax.Array, width, time_step):
    """``(init, step)`` for backward Euler, ``(I - dt M) rho_{n+1} = rho_n`` (a tridiagonal solve)."""
    gen = generator(potential, width)
    lower, diagonal, upper = -time_step * gen.lower, 1.0 - time_step * gen.diagonal, -time_step * gen.upper

    def init(density: jax.Array) -> FokkerPlanckState:
        return FokkerPlanckState(density, jnp.zeros((), density.dtype))

    def step(state: FokkerPlanckState) -> FokkerPlanckState:
        density = jax.lax.linalg.tridiagonal_solve(lower, diagonal, upper, state.density[:, None])[:, 0]
        return FokkerPlanckState(density, state.time + time_step)

    return init, step


def free_energy(potential: jax.Array, density: jax.Array, width) -> jax.Array:
    """``F(rho) = int rho L + int rho log rho`` (which is ``L_PPO(rho)`` up to a constant)."""
    safe = jnp.where(density > 0, density, 1.0)
    return width * jnp.sum(density * potential + jnp.where(density > 0, density * jnp.log(safe), 0.0))


def dissipation(potential: jax.Array, density: jax.Array, width) -> jax.Array:
    """``int rho |d_x (L + log rho)|^2``, by centred differences at the faces (the continuum expression)."""
    chemical = potential + jnp.log(density)
    face_density = 0.5 * (density[1:] + density[:-1])
    return width * jnp.sum(face_density * (jnp.diff(chemical) / width) ** 2)


def stationary_density(potential: jax.Array, width) -> jax.Array:
    weights = jnp.exp(-(potential - potential.min()))
    return weights / (width * weights.sum())


def spectral_gap(potential: jax.Array, width) -> jax.Array:
    """Smallest non-zero relaxation rate of the generator (its inverse is the relaxation time).

    ``M`` is reversible with respect to ``rho*``, so ``D^-1/2 M D^1/2`` (``D = diag rho*``) is symmetric
    tridiagonal with off-diagonal ``sqrt(M_{i,i+1} M_{i+1,i})``.
    """
    gen = generator(potential, width)
    off = jnp.sqrt(gen.upper[:-1] * gen.lower[1:])
    symmetric = jnp.diag(-gen.diagonal) - jnp.diag(off, 1) - jnp.diag(off, -1)
    return jnp.linalg.eigvalsh(symmetric)[1]  # ascending; [0] is the stationary state's 0
