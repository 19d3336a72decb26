"""Particle samplers for the density ``exp(-U(x) / temperature)``, as ``(init, step)`` pairs.

An algorithm acts on one particle; ``advance`` vmaps it over a batch of particles and runs it with
``lax.fori_loop``. The state caches the potential and its gradient, so Metropolis-adjusted Langevin (MALA) pays
one gradient evaluation per step, as blackjax's MALA does.

- ``euler_maruyama``: ``x' = x - h grad U(x) + sqrt(2 h T) xi``, the Langevin SDE discretised (biased in ``h``).
- ``mala``: the same move as a proposal, with the Metropolis-Hastings correction (exact stationary law).
- ``gradient_descent``: Euler-Maruyama at temperature 0, i.e. the noise-free descent DTO performs.

Potentials and algorithms are ``jax.tree_util.Partial``s: their arrays (problem data, step size, temperature)
are pytree leaves, so ``advance`` compiles once per potential *function* and is reused across problems.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from experiments.theory.compilation import jit

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


def _init(potential: Potential, position: jax.Array) -> ParticleState:
    value, grad = jax.value_and_grad(potential)(position)
    return ParticleState(position, value, grad)


def langevin_move(state: ParticleState, normal: jax.Array, step_size, temperature) -> jax.Array:
    """One Euler-Maruyama move driven by the given standard normal (lets callers couple chains)."""
    return state.position - step_size * state.grad + jnp.sqrt(2.0 * step_size * temperature) * normal


def _standard_normal(key, state):
    return jax.random.normal(key, jnp.shape(state.position), jnp.result_type(state.position))


def _euler_maruyama_step(potential, step_size, temperature, key, state):
    new_state = _init(potential, langevin_move(state, _standard_normal(key, state), step_size, temperature))
    return new_state, StepInfo(jnp.array(True), jnp.ones((), jnp.result_type(state.position)))


def _mala_step(potential, step_size, temperature, key, state):
    def log_proposal(to: jax.Array, origin: ParticleState) -> jax.Array:
        """log q(to | origin) up to a constant that cancels in the ratio."""
        mean = origin.position - step_size * origin.grad
        return -jnp.sum((to - mean) ** 2) / (4.0 * step_size * temperature)

    key_move, key_accept = jax.random.split(key)
    proposal = _init(potential, langevin_move(state, _standard_normal(key_move, state), step_size, temperature))
    log_ratio = (
        -(proposal.potential - state.potential) / temperature
        + log_proposal(state.position, proposal)
        - log_proposal(proposal.position, state)
    )
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    accepted = jnp.log(jax.random.uniform(key_accept, dtype=log_ratio.dtype)) < log_ratio
    new_state = jax.tree.map(lambda new, old: jnp.where(accepted, new, old), proposal, state)
    return new_state, StepInfo(accepted, jnp.minimum(1.0, jnp.exp(log_ratio)))


def euler_maruyama(potential: Potential, step_size, temperature=1.0) -> SamplingAlgorithm:
    step = Partial(_euler_maruyama_step, potential, step_size, temperature)
    return SamplingAlgorithm(Partial(_init, potential), step)


def gradient_descent(potential: Potential, step_size) -> SamplingAlgorithm:
    """Noise-free descent on ``U``: the ``temperature -> 0`` limit of Langevin, which is what DTO runs."""
    return euler_maruyama(potential, step_size, temperature=0.0)


def mala(potential: Potential, step_size, temperature=1.0) -> SamplingAlgorithm:
    return SamplingAlgorithm(Partial(_init, potential), Partial(_mala_step, potential, step_size, temperature))


@jit
def init_particles(algorithm: SamplingAlgorithm, positions: jax.Array) -> ParticleState:
    return jax.vmap(algorithm.init)(positions)


@jit(loop_kernel=True)
def advance(algorithm: SamplingAlgorithm, key: jax.Array, states: ParticleState, num_steps) -> tuple:
    """Run ``num_steps`` steps of every particle; returns ``(states, mean acceptance probability)``.

    ``num_steps`` is traced (one compilation serves every segment length); step ``i`` uses ``fold_in(key, i)``,
    so chaining segments needs a fresh ``key`` per segment.
    """
    num_particles = states.position.shape[0]
    batched_step = jax.vmap(algorithm.step)

    def body(i, carry):
        states, accepted = carry
        keys = jax.random.split(jax.random.fold_in(key, i), num_particles)
        states, info = batched_step(keys, states)
        return states, accepted + jnp.mean(info.acceptance_prob)

    zero = jnp.zeros((), jnp.result_type(states.position))
    states, accepted = jax.lax.fori_loop(0, num_steps, body, (states, zero))
    return states, accepted / jnp.maximum(num_steps, 1)


def coupled_euler_maruyama(potential: Potential, key, positions, step_sizes, refinement: int, duration,
                           temperature=1.0) -> jax.Array:
    """Euler-Maruyama chains at several step sizes driven by one Brownian path (common random numbers).

    ``step_sizes`` must be integer multiples of the reference step ``min(step_sizes) / refinement``. Every chain
    starts from ``positions (n, d)`` and runs for ``duration`` (a multiple of ``max(step_sizes)``). Returns the
    final positions, ``(len(step_sizes) + 1, n, d)``: one chain per step size, then the reference chain.
    Coupling makes the differences between chains (the discretisation bias) far less noisy than each chain's
    own sampling error.
    """
    reference = min(step_sizes) / refinement
    factors = [round(h / reference) for h in (*step_sizes, reference)]
    num_fine = round(duration / reference)
    nested = all(abs(f * reference - h) <= 1e-9 * h for f, h in zip(factors, step_sizes))
    if not nested or any(num_fine % f for f in factors):
        raise ValueError(f"step sizes {step_sizes} and duration {duration} do not nest on the step {reference}")
    return _coupled_run(potential, key, positions, reference, temperature, jnp.array(factors), num_fine)


@jit(loop_kernel=True)
def _coupled_run(potential, key, positions, reference, temperature, factors, num_fine_steps):
    """Every chain sees the same fine Brownian increments; chain ``c`` sums ``factors[c]`` of them and moves
    once per ``factors[c]`` fine steps, so all chains advance in one loop (coarse chains mostly wait)."""
    init = jax.vmap(jax.vmap(partial(_init, potential)))
    move = jax.vmap(jax.vmap(langevin_move, in_axes=(0, 0, None, None)), in_axes=(0, 0, 0, None))
    num_chains = factors.shape[0]
    step_sizes = factors * reference

    def per_chain(flags, like):
        return flags.reshape(num_chains, *([1] * (like.ndim - 1)))

    def fine_step(j, carry):
        states, summed_noise = carry
        summed_noise = summed_noise + jax.random.normal(jax.random.fold_in(key, j), positions.shape, positions.dtype)
        moves_now = (j + 1) % factors == 0
        normal = summed_noise / jnp.sqrt(per_chain(factors, summed_noise).astype(positions.dtype))
        proposed = init(move(states, normal, step_sizes, temperature))
        states = jax.tree.map(lambda new, old: jnp.where(per_chain(moves_now, new), new, old), proposed, states)
        return states, jnp.where(per_chain(moves_now, summed_noise), 0.0, summed_noise)

    stacked = jnp.broadcast_to(positions, (num_chains, *positions.shape))
    carry = (init(stacked), jnp.zeros_like(stacked))
    states, _ = jax.lax.fori_loop(0, num_fine_steps, fine_step, carry)
    return states.position
