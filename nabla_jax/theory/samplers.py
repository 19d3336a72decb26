"""Particle samplers for the density ``exp(-U(x) / temperature)``, as ``(init, step)`` pairs.

An algorithm acts on one particle; ``advance`` vmaps it over a batch of particles and runs it with
``lax.fori_loop``. The state caches the potential and its gradient, so Metropolis-adjusted Langevin (MALA) pays
one gradient evaluation per step, as blackjax's MALA does.

- ``euler_maruyama``: ``x' = x - h grad U(x) + sqrt(2 h T) xi``, the Langevin SDE discretised (biased in ``h``).
- ``mala``: the same move as a proposal, with the Metropolis-Hastings correction (exact stationary law).
- ``gradient_descent``: Euler-Maruyama at temperature 0, i.e. the noise-free descent DTO performs.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Potential = Callable[[jax.Array], jax.Array]


class ParticleState(NamedTuple):
    position: jax.Array
    potential: jax.Array  # U(position)
    grad: jax.Array  # grad U(position)


class StepInfo(NamedTuple):
    accepted: jax.Array  # bool; always True for the unadjusted samplers
    acceptance_prob: jax.Array


class SamplingAlgorithm(NamedTuple):
    init: Callable[[jax.Array], ParticleState]
    step: Callable[[jax.Array, ParticleState], tuple[ParticleState, StepInfo]]


def particle_init(potential: Potential) -> Callable[[jax.Array], ParticleState]:
    value_and_grad = jax.value_and_grad(potential)

    def init(position: jax.Array) -> ParticleState:
        value, grad = value_and_grad(position)
        return ParticleState(position, value, grad)

    return init


def langevin_move(state: ParticleState, normal: jax.Array, step_size, temperature) -> jax.Array:
    """One Euler-Maruyama move driven by the given standard normal (lets callers couple chains)."""
    return state.position - step_size * state.grad + jnp.sqrt(2.0 * step_size * temperature) * normal


def euler_maruyama(potential: Potential, step_size: float, temperature: float = 1.0) -> SamplingAlgorithm:
    init = particle_init(potential)

    def step(key, state):
        normal = jax.random.normal(key, jnp.shape(state.position), jnp.result_type(state.position))
        new_state = init(langevin_move(state, normal, step_size, temperature))
        one = jnp.ones((), jnp.result_type(state.position))
        return new_state, StepInfo(jnp.array(True), one)

    return SamplingAlgorithm(init, step)


def gradient_descent(potential: Potential, step_size: float) -> SamplingAlgorithm:
    """Noise-free descent on ``U``: the ``temperature -> 0`` limit of Langevin, which is what DTO runs."""
    return euler_maruyama(potential, step_size, temperature=0.0)


def mala(potential: Potential, step_size: float, temperature: float = 1.0) -> SamplingAlgorithm:
    init = particle_init(potential)

    def log_proposal(to: jax.Array, origin: ParticleState) -> jax.Array:
        """log q(to | origin) up to a constant that cancels in the ratio."""
        mean = origin.position - step_size * origin.grad
        return -jnp.sum((to - mean) ** 2) / (4.0 * step_size * temperature)

    def step(key, state):
        key_move, key_accept = jax.random.split(key)
        normal = jax.random.normal(key_move, jnp.shape(state.position), jnp.result_type(state.position))
        proposal = init(langevin_move(state, normal, step_size, temperature))
        log_ratio = (
            -(proposal.potential - state.potential) / temperature
            + log_proposal(state.position, proposal)
            - log_proposal(proposal.position, state)
        )
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accepted = jnp.log(jax.random.uniform(key_accept, dtype=log_ratio.dtype)) < log_ratio
        new_state = jax.tree.map(lambda new, old: jnp.where(accepted, new, old), proposal, state)
        return new_state, StepInfo(accepted, jnp.minimum(1.0, jnp.exp(log_ratio)))

    return SamplingAlgorithm(init, step)


def init_particles(algorithm: SamplingAlgorithm, positions: jax.Array) -> ParticleState:
    return jax.vmap(algorithm.init)(positions)


@partial(jax.jit, static_argnums=(0,))
def advance(algorithm: SamplingAlgorithm, key: jax.Array, states: ParticleState, num_steps) -> tuple:
    """Run ``num_steps`` steps of every particle; returns ``(states, mean acceptance rate)``.

    ``num_steps`` is traced (one compilation serves every segment length); step ``i`` uses ``fold_in(key, i)``,
    so chaining segments needs a fresh ``key`` per segment.
    """
    num_particles = jax.tree.leaves(states)[0].shape[0]
    batched_step = jax.vmap(algorithm.step)

    def body(i, carry):
        states, accepted = carry
        keys = jax.random.split(jax.random.fold_in(key, i), num_particles)
        states, info = batched_step(keys, states)
        return states, accepted + jnp.mean(info.acceptance_prob)

    zero = jnp.zeros((), jnp.result_type(states.position))
    states, accepted = jax.lax.fori_loop(0, num_steps, body, (states, zero))
    return states, accepted / jnp.maximum(num_steps, 1)


def coupled_euler_maruyama(potential: Potential, key, positions, step_sizes, refinement: int, num_coarse_steps,
                           temperature: float = 1.0) -> list[jax.Array]:
    """Euler-Maruyama chains at several step sizes driven by one Brownian path (common random numbers).

    ``step_sizes`` must be integer multiples of the reference step ``min(step_sizes) / refinement``; every chain
    starts from ``positions (n, d)`` and runs for ``num_coarse_steps * max(step_sizes)`` time units. Returns the
    final positions of each chain followed by the reference chain's. Coupling makes the differences between
    chains (the discretisation bias) far less noisy than each chain's own sampling error.
    """
    reference = min(step_sizes) / refinement
    all_steps = [*step_sizes, reference]
    factors = [round(h / reference) for h in all_steps]
    fine_per_coarse = max(factors)
    if any(abs(f * reference - h) > 1e-9 * h for f, h in zip(factors, all_steps)) or any(
        fine_per_coarse % f for f in factors
    ):
        raise ValueError(f"step sizes {step_sizes} are not nested multiples of {reference}")
    init = jax.vmap(particle_init(potential))
    move = jax.vmap(langevin_move, in_axes=(0, 0, None, None))

    @jax.jit
    def run(key, positions):
        def coarse_step(states, k):
            normal = jax.random.normal(k, (fine_per_coarse, *positions.shape), positions.dtype)
            new_states = []
            for state, factor, h in zip(states, factors, all_steps):
                grouped = normal.reshape(fine_per_coarse // factor, factor, *positions.shape)
                increments = grouped.sum(axis=1) / jnp.sqrt(factor)  # N(0, 1) per step of size h
                state, _ = jax.lax.scan(
                    lambda s, increment, h=h: (init(move(s, increment, h, temperature)), None), state, increments
                )
                new_states.append(state)
            return new_states, None

        states = [init(positions) for _ in all_steps]
        states, _ = jax.lax.scan(coarse_step, states, jax.random.split(key, num_coarse_steps))
        return [state.position for state in states]

    return run(key, positions)
