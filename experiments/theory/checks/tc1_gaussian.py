"""TC1: Gaussian-quadratic exact case. Langevin particles against the closed-form Wasserstein gradient flow.

Parts: exact Ornstein-Uhlenbeck transitions and MALA against ``(m_t, S_t)``; Euler-Maruyama's bias, measured on
coupled chains and compared with the scheme's exact moment recursion (first order: halving ``dt`` halves it);
and the first-order match ``dL_PPO/dm = E[grad L]``, ``dL_PPO/dS = (E[hess L] - S^-1) / 2``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from experiments.theory import gaussian, samplers
from experiments.theory.compilation import jit
from experiments.theory.report import CheckRow, at_most, within
from experiments.theory.statistics import mean_and_standard_error, moment_errors

NAME = "TC1"


class Config(NamedTuple):
    dim: int
    num_particles: int
    times: tuple[float, ...]  # finite times; the stationary law is checked as well
    mala_step_size: float  # transient: MALA is exact only at stationarity, so keep its O(h) bias below the SE
    mala_stationary_step_size: float
    mala_stationary_time: float
    em_step_sizes: tuple[float, float, float]  # h, h/2, h/4
    em_reference_refinement: int  # the finest chain uses min(em_step_sizes) / refinement
    em_time: float
    em_particles: int
    em_jackknife_groups: int
    num_monte_carlo: int
    z_tolerance: float  # tolerance in measured standard errors
    paper_tolerances: bool  # also hold moments to |dm| <= 0.02 and 2% covariance error (needs ~2^16 particles)
    reward_coeff: float = 1.0


FULL = Config(dim=4, num_particles=2**16, times=(0.1, 0.5, 2.0), mala_step_size=1e-3,
              mala_stationary_step_size=0.05, mala_stationary_time=20.0, em_step_sizes=(1e-2, 5e-3, 2.5e-3),
              em_reference_refinement=8, em_time=2.0, em_particles=2**14, em_jackknife_groups=16, num_monte_carlo=2**16,
              z_tolerance=4.0, paper_tolerances=True)
FAST = Config(dim=2, num_particles=2**12, times=(0.1, 0.5, 2.0), mala_step_size=1e-2,
              mala_stationary_step_size=0.3, mala_stationary_time=15.0, em_step_sizes=(2e-2, 1e-2, 5e-3),
              em_reference_refinement=4, em_time=0.4, em_particles=2**11, em_jackknife_groups=16, num_monte_carlo=2**12,
              z_tolerance=4.0, paper_tolerances=False)


def problem_for(config: Config, seed: int) -> gaussian.GaussianProblem:
    return gaussian.random_problem(seed, config.dim, config.reward_coeff)


def _moment_rows(config, label, err) -> list[CheckRow]:
    """Rows for one set of ``statistics.moment_errors``."""
    z = config.z_tolerance
    # the errors are reported in measured standard errors; the noise floor column is one standard error
    rows = [
        at_most(NAME, f"{label}: mean, max |dm_j| / SE_j", err["mean_z"], z, noise_floor=1.0),
        at_most(NAME, f"{label}: cov, max |dS_jk| / SE_jk", err["cov_z"], z, noise_floor=1.0),
    ]
    if config.paper_tolerances:
        rows += [
            at_most(NAME, f"{label}: mean, max |dm_j|", err["mean_abs"], 0.02, noise_floor=err["mean_se"]),
            at_most(NAME, f"{label}: cov, |dS|_F / |S|_F", err["cov_rel_frobenius"], 0.02,
                    noise_floor=err["cov_rel_frobenius_se"]),
        ]
    return rows


@jit(static_argnames="num")
def _exact_flow_errors(problem, particle_problem, key, num, times):
    key_init, key_move = jax.random.split(key)
    initial = gaussian.sample_prior(particle_problem, key_init, num)

    def errors_at(t, k):
        samples = gaussian.exact_transition(particle_problem, k, initial, t)
        return moment_errors(samples, *gaussian.flow_moments(problem, t))

    return jax.vmap(errors_at)(times, jax.random.split(key_move, times.shape[0]))


def exact_flow_rows(config: Config, key, problem, particle_problem=None) -> list[CheckRow]:
    """Exact OU transitions from the prior (``particle_problem`` defaults to ``problem``: the subject)."""
    particle_problem = problem if particle_problem is None else particle_problem
    times = [*config.times, math.inf]
    errors = _exact_flow_errors(problem, particle_problem, key, config.num_particles, jnp.array(times))
    rows = []
    for i, t in enumerate(times):
        rows += _moment_rows(config, f"exact OU, t={t:g}", jax.tree.map(lambda e: e[i], errors))
    return rows


def mala_rows(config: Config, key, problem, potential: Callable | None = None,
              sampler: Callable = samplers.mala) -> list[CheckRow]:
    """MALA from the prior on ``potential`` (defaults to the DTO loss of ``problem``), at each time and at
    stationarity. ``sampler`` is the subject: ``samplers.mala`` or a broken stand-in."""
    potential = gaussian.dto_loss_fn(problem) if potential is None else potential
    key_init, key_run, key_stat = jax.random.split(key, 3)
    initial = gaussian.sample_prior(problem, key_init, config.num_particles)

    algorithm = sampler(potential, config.mala_step_size)
    states = samplers.init_particles(algorithm, initial)
    rows, elapsed_steps = [], 0
    for i, t in enumerate(config.times):
        target_steps = round(t / config.mala_step_size)
        states, _ = samplers.advance(algorithm, jax.random.fold_in(key_run, i), states, target_steps - elapsed_steps)
        elapsed_steps = target_steps
        rows += _moment_rows(config, f"MALA h={config.mala_step_size:g}, t={t:g}",
                             moment_errors(states.position, *gaussian.flow_moments(problem, t)))

    stationary = sampler(potential, config.mala_stationary_step_size)
    states = samplers.init_particles(stationary, initial)
    num_steps = round(config.mala_stationary_time / config.mala_stationary_step_size)
    states, _ = samplers.advance(stationary, key_stat, states, num_steps)
    rows += _moment_rows(config, f"MALA h={config.mala_stationary_step_size:g}, t=inf",
                         moment_errors(states.position, *gaussian.flow_moments(problem, math.inf)))
    return rows


def _weighted_moments(x, weights):
    weights = weights / weights.sum()
    mean = weights @ x
    centred = x - mean
    return mean, (centred * weights[:, None]).T @ centred


def _bias(moments, reference):
    (mean_a, cov_a), (mean_b, cov_b) = moments, reference
    return jnp.sqrt(jnp.sum((mean_a - mean_b) ** 2) + jnp.sum((cov_a - cov_b) ** 2))


@jit
def _bias_ratios(finals, weights):
    """Ratios ``b(h) / b(h/2)`` of the chains' biases against a Richardson-extrapolated continuous limit.

    ``finals`` holds the chains at ``h1 > h2 > h3`` and then at ``2 h_ref`` and ``h_ref``; the continuous-time
    moments are estimated as ``2 M(h_ref) - M(2 h_ref)`` (error ``O(h_ref^2)``).
    """
    moments = [_weighted_moments(finals[i], weights) for i in range(finals.shape[0])]
    (mean_2ref, cov_2ref), (mean_ref, cov_ref) = moments[-2], moments[-1]
    limit = (2 * mean_ref - mean_2ref, 2 * cov_ref - cov_2ref)
    biases = [_bias(m, limit) for m in moments[:-2]]
    return jnp.stack([biases[i] / biases[i + 1] for i in range(len(biases) - 1)])


def euler_maruyama_rows(config: Config, key, problem, potential: Callable | None = None,
                        temperature: float = 1.0) -> list[CheckRow]:
    """Euler-Maruyama at ``dt, dt/2, dt/4`` against its exact moment recursion, and its bias ratios.

    All chains share one Brownian path (coupling), which makes their differences, hence the measured biases,
    far less noisy than each chain's own sampling error. The bias of a chain is the distance of its moments at
    ``em_time`` from a Richardson extrapolation of two finer coupled chains; standard errors come from a
    jackknife over groups of particles. ``temperature`` is the subject's noise scale (1 is right).
    """
    potential = gaussian.dto_loss_fn(problem) if potential is None else potential
    key_init, key_run = jax.random.split(key)
    initial = gaussian.sample_prior(problem, key_init, config.em_particles)
    reference_step = min(config.em_step_sizes) / config.em_reference_refinement
    finals = samplers.coupled_euler_maruyama(potential, key_run, initial, (*config.em_step_sizes, 2 * reference_step),
                                             2, config.em_time, temperature)

    rows = []
    for h, samples in zip(config.em_step_sizes, finals):
        em_law = gaussian.euler_maruyama_moments(problem, h, round(config.em_time / h))
        rows += _moment_rows(config._replace(paper_tolerances=False), f"EM h={h:g}, t={config.em_time:g} vs EM law",
                             moment_errors(samples, *em_law))

    groups = config.em_jackknife_groups
    group_of = jnp.arange(config.em_particles) % groups
    # row 0 keeps every particle; row g + 1 leaves group g out
    weights = (group_of[None, :] != jnp.arange(-1, groups)[:, None]).astype(initial.dtype)
    all_ratios = jax.vmap(_bias_ratios, in_axes=(None, 0))(finals, weights)
    measured, leave_one_out = all_ratios[0], all_ratios[1:]
    jackknife_se = jnp.sqrt((groups - 1) / groups * jnp.sum((leave_one_out - leave_one_out.mean(0)) ** 2, axis=0))

    continuous = gaussian.flow_moments(problem, config.em_time)
    exact_biases = [_bias(gaussian.euler_maruyama_moments(problem, h, round(config.em_time / h)), continuous)
                    for h in config.em_step_sizes]
    for i in range(len(config.em_step_sizes) - 1):
        h = config.em_step_sizes[i]
        expected = exact_biases[i] / exact_biases[i + 1]
        label = f"EM bias ratio b({h:g})/b({h / 2:g})"
        rows.append(within(NAME, f"{label} vs 2", measured[i], 2.0, 0.3, noise_floor=jackknife_se[i]))
        rows.append(within(NAME, f"{label} vs EM law", measured[i], expected,
                           config.z_tolerance * jackknife_se[i], noise_floor=jackknife_se[i]))
    return rows


@jit(static_argnames=("objective", "num"))
def _gradient_errors(problem, key, objective, num):
    mean = problem.prior_mean + 0.5
    cov = problem.prior_cov
    grad_mean, grad_cov = jax.grad(objective, argnums=(1, 2))(problem, mean, cov)
    closed_mean, closed_cov = gaussian.objective_gradient_closed_form(problem, mean, cov)
    mean_terms, cov_terms = gaussian.objective_gradient_monte_carlo(problem, key, mean, cov, num)
    mc_mean, mc_mean_se = mean_and_standard_error(mean_terms)
    mc_cov, mc_cov_se = mean_and_standard_error(cov_terms)
    return (jnp.max(jnp.abs(grad_mean - mc_mean) / mc_mean_se), jnp.max(jnp.abs(grad_cov - mc_cov) / mc_cov_se),
            jnp.max(jnp.abs(grad_mean - closed_mean)), jnp.max(jnp.abs(grad_cov - closed_cov)))


def gradient_rows(config: Config, key, problem, objective: Callable = gaussian.kl_regularised_objective
                  ) -> list[CheckRow]:
    """Autodiff of the closed-form ``L_PPO(m, S)`` (``objective``, the subject) against Monte Carlo and against
    the closed-form gradients, at ``rho = N(m0 + 0.5, S0)`` (away from the optimum)."""
    z_mean, z_cov, closed_mean, closed_cov = _gradient_errors(problem, key, objective, config.num_monte_carlo)
    z = config.z_tolerance
    return [
        at_most(NAME, "dL_PPO/dm: autodiff vs MC E[grad L], max z", z_mean, z, noise_floor=1.0),
        at_most(NAME, "dL_PPO/dS: autodiff vs MC (E[hess L]-S^-1)/2, max z", z_cov, z, noise_floor=1.0),
        at_most(NAME, "dL_PPO/dm: autodiff vs closed form, max abs", closed_mean, 1e-10),
        at_most(NAME, "dL_PPO/dS: autodiff vs closed form, max abs", closed_cov, 1e-10),
    ]


def run(config: Config, seed: int = 0) -> list[CheckRow]:
    key = jax.random.key(seed)
    problem = problem_for(config, seed)
    return [
        *exact_flow_rows(config, jax.random.fold_in(key, 1), problem),
        *mala_rows(config, jax.random.fold_in(key, 2), problem),
        *euler_maruyama_rows(config, jax.random.fold_in(key, 3), problem),
        *gradient_rows(config, jax.random.fold_in(key, 4), problem),
    ]
