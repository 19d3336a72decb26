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

from nabla_jax.theory import gaussian, samplers
from nabla_jax.theory.report import CheckRow, at_most, within
from nabla_jax.theory.statistics import mean_and_standard_error, moment_errors

NAME = "TC1"


class Config(NamedTuple):
    dim: int
    num_particles: int
    times: tuple[float, ...]  # finite times; the stationary law is checked as well
    mala_step_size: float  # transient: MALA is exact only at stationarity, so keep its O(h) bias below the SE
    mala_stationary_step_size: float
    mala_stationary_time: float
    em_step_sizes: tuple[float, float, float]  # h, h/2, h/4
    em_reference_refinement: int  # the reference chain uses min(em_step_sizes) / refinement
    em_time: float
    em_jackknife_groups: int
    num_monte_carlo: int
    z_tolerance: float  # tolerance in measured standard errors
    paper_tolerances: bool  # also hold moments to |dm| <= 0.02 and 2% covariance error (needs ~2^16 particles)
    reward_coeff: float = 1.0


FULL = Config(dim=4, num_particles=2**16, times=(0.1, 0.5, 2.0), mala_step_size=1e-3,
              mala_stationary_step_size=0.05, mala_stationary_time=20.0, em_step_sizes=(1e-2, 5e-3, 2.5e-3),
              em_reference_refinement=8, em_time=2.0, em_jackknife_groups=16, num_monte_carlo=2**16,
              z_tolerance=4.0, paper_tolerances=True)
FAST = Config(dim=2, num_particles=2**12, times=(0.1, 0.5, 2.0), mala_step_size=2e-3,
              mala_stationary_step_size=0.1, mala_stationary_time=10.0, em_step_sizes=(2e-2, 1e-2, 5e-3),
              em_reference_refinement=4, em_time=0.5, em_jackknife_groups=16, num_monte_carlo=2**12,
              z_tolerance=4.0, paper_tolerances=False)


def problem_for(config: Config, key) -> gaussian.GaussianProblem:
    return gaussian.random_problem(key, config.dim, config.reward_coeff)


def _moment_rows(config, label, samples, mean, cov) -> list[CheckRow]:
    err = moment_errors(samples, mean, cov)
    z = config.z_tolerance
    # the errors are reported in measured standard errors; the noise floor column is one standard error
    rows = [
        at_most(NAME, f"{label}: mean, max |dm_j| / SE_j", err["mean_z"], z, noise_floor=1.0),
        at_most(NAME, f"{label}: cov, max |dS_jk| / SE_jk", err["cov_z"], z, noise_floor=1.0),
    ]
    if config.paper_tolerances:
        rows += [
            at_most(NAME, f"{label}: mean, max |dm_j|", err["mean_abs"], 0.02),
            at_most(NAME, f"{label}: cov, |dS|_F / |S|_F", err["cov_rel_frobenius"], 0.02),
        ]
    return rows


def exact_flow_rows(config: Config, key, problem, particle_problem=None) -> list[CheckRow]:
    """Exact OU transitions from the prior (``particle_problem`` defaults to ``problem``: the subject)."""
    particle_problem = problem if particle_problem is None else particle_problem
    key_init, key_move = jax.random.split(key)
    initial = gaussian.sample_prior(particle_problem, key_init, config.num_particles)
    rows = []
    for i, t in enumerate([*config.times, math.inf]):
        samples = gaussian.exact_transition(particle_problem, jax.random.fold_in(key_move, i), initial, t)
        rows += _moment_rows(config, f"exact OU, t={t:g}", samples, *gaussian.flow_moments(problem, t))
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
        rows += _moment_rows(config, f"MALA h={config.mala_step_size:g}, t={t:g}", states.position,
                             *gaussian.flow_moments(problem, t))

    stationary = sampler(potential, config.mala_stationary_step_size)
    states = samplers.init_particles(stationary, initial)
    num_steps = round(config.mala_stationary_time / config.mala_stationary_step_size)
    states, _ = samplers.advance(stationary, key_stat, states, num_steps)
    rows += _moment_rows(config, f"MALA h={config.mala_stationary_step_size:g}, t=inf", states.position,
                         *gaussian.flow_moments(problem, math.inf))
    return rows


def _bias(mean_a, cov_a, mean_b, cov_b):
    return jnp.sqrt(jnp.sum((mean_a - mean_b) ** 2) + jnp.sum((cov_a - cov_b) ** 2))


def _empirical_moments(x):
    mean = x.mean(axis=0)
    return mean, (x - mean).T @ (x - mean) / x.shape[0]


def euler_maruyama_rows(config: Config, key, problem, potential: Callable | None = None,
                        temperature: float = 1.0) -> list[CheckRow]:
    """Euler-Maruyama at ``dt, dt/2, dt/4`` (coupled) against its exact moment recursion and the bias ratio.

    The bias of a chain is the distance between its moments at ``em_time`` and those of a much finer coupled
    reference chain. ``temperature`` is the subject's noise scale (1 is right; 0 drops the noise).
    """
    potential = gaussian.dto_loss_fn(problem) if potential is None else potential
    key_init, key_run = jax.random.split(key)
    initial = gaussian.sample_prior(problem, key_init, config.num_particles)
    coarsest = max(config.em_step_sizes)
    num_coarse = round(config.em_time / coarsest)
    finals = samplers.coupled_euler_maruyama(potential, key_run, initial, config.em_step_sizes,
                                             config.em_reference_refinement, num_coarse, temperature)
    reference_step = min(config.em_step_sizes) / config.em_reference_refinement
    exact = [gaussian.euler_maruyama_moments(problem, h, round(config.em_time / h))
             for h in [*config.em_step_sizes, reference_step]]

    rows = []
    for h, samples, moments in zip(config.em_step_sizes, finals, exact):
        rows += _moment_rows(config._replace(paper_tolerances=False), f"EM h={h:g}, t={config.em_time:g} vs EM law",
                             samples, *moments)

    groups = config.em_jackknife_groups

    def ratios(keep):
        """Bias ratios b(h)/b(h/2) over the particles selected by ``keep`` (a boolean mask)."""
        moments = [_empirical_moments(x[keep]) for x in finals]
        biases = [_bias(*moments[i], *moments[-1]) for i in range(len(config.em_step_sizes))]
        return [biases[i] / biases[i + 1] for i in range(len(biases) - 1)]

    group_of = jnp.arange(config.num_particles) % groups
    measured = ratios(jnp.ones(config.num_particles, bool))
    leave_one_out = jnp.array([ratios(group_of != g) for g in range(groups)])  # (groups, pairs)
    jackknife_se = jnp.sqrt((groups - 1) / groups * jnp.sum((leave_one_out - leave_one_out.mean(0)) ** 2, axis=0))
    exact_biases = [_bias(*exact[i], *exact[-1]) for i in range(len(config.em_step_sizes))]
    for i in range(len(measured)):
        h = config.em_step_sizes[i]
        expected = exact_biases[i] / exact_biases[i + 1]
        label = f"EM bias ratio b({h:g})/b({h / 2:g})"
        rows.append(within(NAME, f"{label} vs 2", measured[i], 2.0, 0.3, noise_floor=jackknife_se[i]))
        rows.append(within(NAME, f"{label} vs EM recursion", measured[i], expected,
                           config.z_tolerance * jackknife_se[i], noise_floor=jackknife_se[i]))
    return rows


def gradient_rows(config: Config, key, problem, objective: Callable = gaussian.kl_regularised_objective
                  ) -> list[CheckRow]:
    """Autodiff of the closed-form ``L_PPO(m, S)`` (``objective``, the subject) against Monte Carlo and against
    the closed-form gradients, at ``rho = N(m0 + 0.5, S0)`` (away from the optimum)."""
    mean = problem.prior_mean + 0.5
    cov = problem.prior_cov
    grad_mean, grad_cov = jax.grad(objective, argnums=(1, 2))(problem, mean, cov)
    closed_mean, closed_cov = gaussian.objective_gradient_closed_form(problem, mean, cov)
    mean_terms, cov_terms = gaussian.objective_gradient_monte_carlo(problem, key, mean, cov, config.num_monte_carlo)
    mc_mean, mc_mean_se = mean_and_standard_error(mean_terms)
    mc_cov, mc_cov_se = mean_and_standard_error(cov_terms)
    z = config.z_tolerance
    return [
        at_most(NAME, "dL_PPO/dm: autodiff vs MC E[grad L], max z", jnp.max(jnp.abs(grad_mean - mc_mean) / mc_mean_se),
                z, noise_floor=1.0),
        at_most(NAME, "dL_PPO/dS: autodiff vs MC (E[hess L]-S^-1)/2, max z",
                jnp.max(jnp.abs(grad_cov - mc_cov) / mc_cov_se), z, noise_floor=1.0),
        at_most(NAME, "dL_PPO/dm: autodiff vs closed form, max abs", jnp.max(jnp.abs(grad_mean - closed_mean)), 1e-10),
        at_most(NAME, "dL_PPO/dS: autodiff vs closed form, max abs", jnp.max(jnp.abs(grad_cov - closed_cov)), 1e-10),
    ]


def run(config: Config, seed: int = 0) -> list[CheckRow]:
    key = jax.random.key(seed)
    problem = problem_for(config, jax.random.fold_in(key, 0))
    return [
        *exact_flow_rows(config, jax.random.fold_in(key, 1), problem),
        *mala_rows(config, jax.random.fold_in(key, 2), problem),
        *euler_maruyama_rows(config, jax.random.fold_in(key, 3), problem),
        *gradient_rows(config, jax.random.fold_in(key, 4), problem),
    ]
