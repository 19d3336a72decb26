"""TC5: the deterministic limit (what DTO runs), temperature/coefficient equivalence, the probability-flow ODE.

(a) Noise-free gradient descent from ``pi`` collapses: every particle ends at a local minimiser of ``L`` (``m*``
in the Gaussian case), and on the bimodal problem each basin keeps the prior mass of its basin of attraction,
not the mass ``rho*`` gives it. (b) Langevin on ``c L`` at temperature ``c`` is Langevin on ``L`` at temperature
1 with time rescaled by ``c``; with the official code's coefficients (``nll_coeff = c = 1e-3``,
``reward_coeff = 1``) the stationary law is ``pi^c exp(r)`` at temperature 1 but ``pi exp(r / c)`` (``lambda =
1000``) at temperature ``c``. (c) The probability-flow ODE ``dx/dt = -grad L - grad log rho_t`` (score in closed
form) transports the particles along the same marginals.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.theory import gaussian, mixture_1d, samplers
from experiments.theory.compilation import jit
from experiments.theory.report import CheckRow, at_most, documented
from experiments.theory.statistics import moment_errors, two_sample_moment_z

NAME = "TC5"


class Config(NamedTuple):
    dim: int
    num_particles: int
    descent_particles: int
    flow_particles: int  # moment-matched, so the flow check has no sampling noise at any count
    descent_step_size: float
    descent_steps: int
    bimodal_reward_coeff: float
    coefficient: float  # c
    rescaled_step_size: float  # the step on L; the step on c L is this / c
    rescaled_steps: int
    stationary_step_size: float
    stationary_steps: int
    flow_times: tuple[float, ...]
    flow_time_step: float
    z_tolerance: float = 4.0
    collapse_tolerance: float = 1e-8
    flow_tolerance: float = 1e-6


FULL = Config(dim=4, num_particles=2**16, descent_particles=2**16, flow_particles=2**12, descent_step_size=0.05,
              descent_steps=2000, bimodal_reward_coeff=3.0,
              coefficient=1e-3, rescaled_step_size=5e-3, rescaled_steps=400, stationary_step_size=0.1,
              stationary_steps=1000, flow_times=(0.5, 2.0), flow_time_step=1e-3)
FAST = Config(dim=2, num_particles=2**12, descent_particles=2**12, flow_particles=64, descent_step_size=0.1,
              descent_steps=400, bimodal_reward_coeff=3.0,
              coefficient=1e-3, rescaled_step_size=1e-2, rescaled_steps=100, stationary_step_size=0.3,
              stationary_steps=100, flow_times=(0.5, 2.0), flow_time_step=1e-3)


def _moment_rows(config, label, errors):
    z = config.z_tolerance
    return [at_most(NAME, f"{label}: mean, max |dm_j| / SE_j", errors["mean_z"], z, noise_floor=1.0),
            at_most(NAME, f"{label}: cov, max |dS_jk| / SE_jk", errors["cov_z"], z, noise_floor=1.0)]


@jit
def _collapse(positions, minimisers):
    distance = jnp.min(jnp.abs(positions.reshape(positions.shape[0], -1)[:, :, None]
                               - minimisers.reshape(minimisers.shape[0], -1).T[None]), axis=-1)
    return {"max_distance": jnp.max(distance), "variance": jnp.max(jnp.var(positions, axis=0))}


def descent_rows(config: Config, key, problem, potential: Callable | None = None,
                 sampler: Callable = samplers.gradient_descent) -> list[CheckRow]:
    """(a) Gradient descent on the Gaussian and on the bimodal problem; ``sampler`` and ``potential`` are the
    subject (noise-free descent on the DTO loss)."""
    potential = gaussian.dto_loss_fn(problem) if potential is None else potential
    key_gauss, key_bimodal = jax.random.split(key)
    algorithm = sampler(potential, config.descent_step_size)
    states = samplers.init_particles(algorithm, gaussian.sample_prior(problem, key_gauss, config.descent_particles))
    states, _ = samplers.advance(algorithm, key_gauss, states, config.descent_steps)
    gauss = _collapse(states.position, gaussian.target_mean(problem)[None])

    bimodal = mixture_1d.default_problem(config.bimodal_reward_coeff)
    grid = jnp.asarray(np.linspace(-6.0, 6.0, 4097))
    minima = mixture_1d.local_minima(bimodal, grid)
    algorithm = sampler(mixture_1d.dto_loss_fn(bimodal), config.descent_step_size)
    start = mixture_1d.sample_prior(bimodal, key_bimodal, config.descent_particles)
    states, _ = samplers.advance(algorithm, key_bimodal, samplers.init_particles(algorithm, start),
                                 config.descent_steps)
    collapse = _collapse(states.position[:, None], minima[:, None])
    basins = _basin_masses(bimodal, states.position, start, minima, grid)
    se = jnp.sqrt(basins["prior"] * (1 - basins["prior"]) / config.descent_particles)
    return [
        at_most(NAME, "(a) Gaussian: max_j Var(x_j) after descent", gauss["variance"], config.collapse_tolerance),
        at_most(NAME, "(a) Gaussian: max |x - argmin L|", gauss["max_distance"], config.collapse_tolerance),
        at_most(NAME, f"(a) bimodal lambda={config.bimodal_reward_coeff:g}: max distance to a local min of L",
                collapse["max_distance"], config.collapse_tolerance),
        documented(NAME, "(a) bimodal: number of local minima of L", minima.shape[0]),
        at_most(NAME, "(a) bimodal: |left-basin fraction - pi(basin of attraction)|",
                jnp.abs(basins["particles"] - basins["prior"]), config.z_tolerance * se, noise_floor=se),
        documented(NAME, "(a) bimodal: left-basin fraction of descent particles (expected: rho* mass)",
                   basins["particles"], expected=basins["target"]),
    ]


@jit
def _basin_masses(problem, final, start, minima, grid):
    """Fraction of descent particles in the left minimum's basin; the prior and rho* mass of that basin of
    attraction (the interval below the barrier, i.e. the maximum of L between the two minima)."""
    loss = jax.vmap(lambda x: mixture_1d.dto_loss(problem, x))(grid)
    between = (grid > minima.min()) & (grid < minima.max())
    barrier = grid[jnp.argmax(jnp.where(between, loss, -jnp.inf))]
    width = grid[1] - grid[0]
    log_prior = jax.vmap(lambda x: mixture_1d.log_prior(problem, x))(grid)
    prior = jnp.exp(log_prior)
    target = jnp.exp(log_prior + problem.reward_coeff * jax.vmap(lambda x: mixture_1d.reward(problem, x))(grid))
    left = grid < barrier
    return {
        "particles": jnp.mean(final < barrier),
        "prior": jnp.sum(jnp.where(left, prior, 0.0)) / jnp.sum(prior),
        "target": jnp.sum(jnp.where(left, target, 0.0)) / jnp.sum(target),
        "start": jnp.mean(start < barrier),
        "width": width,
    }


def rescaling_rows(config: Config, key, problem, temperature_scale: float = 1.0, step_scale: float = 1.0
                   ) -> list[CheckRow]:
    """(b1) Euler-Maruyama on ``c L`` at temperature ``c`` and step ``h / c`` against EM on ``L`` at temperature 1
    and step ``h``, after the same number of steps. ``temperature_scale``/``step_scale`` perturb the scaled
    run (1 is right; a broken time rescaling or temperature shows up here)."""
    c = config.coefficient
    key_a, key_b, key_init = jax.random.split(key, 3)
    start = gaussian.sample_prior(problem, key_init, config.num_particles)
    scaled_potential = gaussian.dto_loss_fn(problem, scale=c)
    scaled = samplers.euler_maruyama(scaled_potential, step_scale * config.rescaled_step_size / c,
                                     temperature_scale * c)
    plain = samplers.euler_maruyama(gaussian.dto_loss_fn(problem), config.rescaled_step_size, 1.0)
    final_scaled, _ = samplers.advance(scaled, key_a, samplers.init_particles(scaled, start), config.rescaled_steps)
    final_plain, _ = samplers.advance(plain, key_b, samplers.init_particles(plain, start), config.rescaled_steps)
    law = gaussian.euler_maruyama_moments(problem, config.rescaled_step_size, config.rescaled_steps)
    t = config.rescaled_step_size * config.rescaled_steps
    return [
        *_moment_rows(config, f"(b) EM on cL at T=c={c:g}, t={t / c:g} vs EM on L at T=1, t={t:g} (two-sample)",
                      two_sample_moment_z(final_scaled.position, final_plain.position)),
        *_moment_rows(config, f"(b) EM on L, T=1, t={t:g} vs EM law", moment_errors(final_plain.position, *law)),
        *_moment_rows(config, f"(b) EM on cL, T=c={c:g}, t={t / c:g} vs EM law",
                      moment_errors(final_scaled.position, *law)),
    ]


def coefficient_rows(config: Config, key, problem, temperature: float | None = None) -> list[CheckRow]:
    """(b2) MALA at stationarity on the code's loss ``-r - c log pi`` at temperature 1 and at temperature ``c``
    (``temperature`` overrides the latter: the subject)."""
    c = config.coefficient
    temperature = c if temperature is None else temperature
    unit = problem._replace(prior_cov=problem.prior_cov / c, reward_coeff=jnp.ones_like(problem.reward_coeff))
    matched = problem._replace(reward_coeff=jnp.ones_like(problem.reward_coeff) / c)
    code_loss = gaussian.dto_loss_fn(matched, scale=c)  # -r - c log pi = c L with lambda = 1/c
    start = gaussian.sample_prior(problem, jax.random.fold_in(key, 0), config.num_particles)
    rows = []
    for i, (label, temp, law_problem) in enumerate([("T=1: pi^c exp(r)", 1.0, unit),
                                                     ("T=c: pi exp(r/c)", temperature, matched)]):
        algorithm = samplers.mala(code_loss, config.stationary_step_size, temp)
        states, acceptance = samplers.advance(algorithm, jax.random.fold_in(key, i + 1),
                                              samplers.init_particles(algorithm, start), config.stationary_steps)
        errors = moment_errors(states.position, *gaussian.flow_moments(law_problem, math.inf))
        rows += _moment_rows(config, f"(b) code loss -r - {c:g} log pi, MALA {label}", errors)
    # same mode, but the spread differs by the factor c (here the temperature only rescales the covariance)
    spread_ratio = jnp.trace(gaussian.flow_moments(unit, math.inf)[1]) / jnp.trace(
        gaussian.flow_moments(matched, math.inf)[1])
    rows.append(documented(NAME, "(b) tr Cov(T=1) / tr Cov(T=c) (expected: 1/c)", spread_ratio, expected=1 / c))
    return rows


def flow_rows(config: Config, key, problem, velocity: Callable = gaussian.probability_flow_velocity
              ) -> list[CheckRow]:
    """(c) RK4 on the probability-flow ODE from moment-matched prior samples (so the flow, affine here, carries
    the empirical moments exactly); ``velocity`` is the subject."""
    positions = gaussian.sample_prior_moment_matched(problem, key, config.flow_particles)
    rows, now = [], 0.0
    for t in config.flow_times:
        positions = gaussian.integrate_probability_flow(problem, positions, now, t, config.flow_time_step, velocity)
        now = t
        errors = _flow_errors(positions, *gaussian.flow_moments(problem, t))
        rows += [at_most(NAME, f"(c) probability flow RK4 dt={config.flow_time_step:g}, t={t:g}: max |dm|",
                         errors[0], config.flow_tolerance),
                 at_most(NAME, f"(c) probability flow RK4 dt={config.flow_time_step:g}, t={t:g}: max |dS|",
                         errors[1], config.flow_tolerance)]
    return rows


@jit
def _flow_errors(x, mean, cov):
    sample_mean = x.mean(axis=0)
    sample_cov = (x - sample_mean).T @ (x - sample_mean) / x.shape[0]
    return jnp.max(jnp.abs(sample_mean - mean)), jnp.max(jnp.abs(sample_cov - cov))


def run(config: Config, seed: int = 0) -> list[CheckRow]:
    key = jax.random.key(seed)
    problem = gaussian.random_problem(seed, config.dim)
    return [
        *descent_rows(config, jax.random.fold_in(key, 0), problem),
        *rescaling_rows(config, jax.random.fold_in(key, 1), problem),
        *coefficient_rows(config, jax.random.fold_in(key, 2), problem),
        *flow_rows(config, jax.random.fold_in(key, 3), problem),
    ]
