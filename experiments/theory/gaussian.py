"""The Gaussian-quadratic case, where the Wasserstein gradient flow of ``L_PPO`` is known in closed form (TC1, TC5).

Prior ``pi = N(m0, S0)``, reward ``r(x) = b.x - x.A.x / 2`` with ``A`` positive semi-definite, coefficient
``lambda``. The DTO loss ``L = -lambda r - log pi`` is then quadratic, ``grad L(x) = P (x - m*)`` with precision
``P = S0^-1 + lambda A`` and ``m* = P^-1 (S0^-1 m0 + lambda b)``, and the law of the Langevin particles started
from ``pi`` stays Gaussian with

    m_t = m* + exp(-P t) (m0 - m*),        S_t = exp(-P t) S0 exp(-P t) + P^-1 (I - exp(-2 P t)),

which are also the moments of the Bures-Wasserstein gradient flow of ``L_PPO`` restricted to Gaussians.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from experiments.theory.compilation import jit


class GaussianProblem(NamedTuple):
    prior_mean: jax.Array  # m0, (d,)
    prior_cov: jax.Array  # S0, (d, d)
    reward_linear: jax.Array  # b, (d,)
    reward_quadratic: jax.Array  # A, (d, d), PSD
    reward_coeff: jax.Array  # lambda


def random_problem(seed: int, dim: int, reward_coeff: float = 1.0) -> GaussianProblem:
    """Well-conditioned random instance (built with NumPy, so it costs no compilation): prior covariance
    eigenvalues in [0.4, 2], reward curvature eigenvalues in [0.2, 1]."""
    rng = np.random.default_rng(seed)

    def random_spd(low, high):
        rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        return (rotation * rng.uniform(low, high, dim)) @ rotation.T

    return GaussianProblem(
        prior_mean=jnp.asarray(rng.standard_normal(dim)),
        prior_cov=jnp.asarray(random_spd(0.4, 2.0)),
        reward_linear=jnp.asarray(rng.standard_normal(dim)),
        reward_quadratic=jnp.asarray(random_spd(0.2, 1.0)),
        reward_coeff=jnp.asarray(reward_coeff, jnp.result_type(float)),
    )


def reward(problem: GaussianProblem, x: jax.Array) -> jax.Array:
    return problem.reward_linear @ x - 0.5 * x @ problem.reward_quadratic @ x


def log_prior(problem: GaussianProblem, x: jax.Array) -> jax.Array:
    diff = x - problem.prior_mean
    _, logdet = jnp.linalg.slogdet(2.0 * jnp.pi * problem.prior_cov)
    return -0.5 * diff @ jnp.linalg.solve(problem.prior_cov, diff) - 0.5 * logdet


def dto_loss(problem: GaussianProblem, x: jax.Array) -> jax.Array:
    """``L(x) = -lambda r(x) - log pi(x)``, the potential of the Langevin dynamics."""
    return -problem.reward_coeff * reward(problem, x) - log_prior(problem, x)


def _dto_loss_precomputed(problem: GaussianProblem, prior_precision, log_normaliser, scale, x):
    diff = x - problem.prior_mean
    return scale * (-problem.reward_coeff * reward(problem, x) + 0.5 * diff @ prior_precision @ diff + log_normaliser)


def dto_loss_fn(problem: GaussianProblem, scale=1.0) -> Partial:
    """``scale * dto_loss(problem, .)`` with the prior's inverse and log-determinant computed once (for samplers;
    every scale shares one compiled sampler)."""
    return Partial(_dto_loss_precomputed, problem, *_prior_terms(problem), jnp.asarray(scale, problem.prior_cov.dtype))


@jit
def _prior_terms(problem: GaussianProblem):
    _, logdet = jnp.linalg.slogdet(2.0 * jnp.pi * problem.prior_cov)
    return jnp.linalg.inv(problem.prior_cov), 0.5 * logdet


@jit
def target_precision(problem: GaussianProblem) -> jax.Array:
    return jnp.linalg.inv(problem.prior_cov) + problem.reward_coeff * problem.reward_quadratic


@jit
def target_mean(problem: GaussianProblem) -> jax.Array:
    prior_precision = jnp.linalg.inv(problem.prior_cov)
    rhs = prior_precision @ problem.prior_mean + problem.reward_coeff * problem.reward_linear
    return jnp.linalg.solve(target_precision(problem), rhs)


@jit
def flow_moments(problem: GaussianProblem, t) -> tuple[jax.Array, jax.Array]:
    """Mean and covariance at time ``t`` (``jnp.inf`` allowed) of Langevin particles started from the prior."""
    eigenvalues, basis = jnp.linalg.eigh(target_precision(problem))
    decay = basis @ jnp.diag(jnp.exp(-eigenvalues * t)) @ basis.T
    stationary_part = basis @ jnp.diag(-jnp.expm1(-2.0 * eigenvalues * t) / eigenvalues) @ basis.T
    m_star = target_mean(problem)
    mean = m_star + decay @ (problem.prior_mean - m_star)
    cov = decay @ problem.prior_cov @ decay.T + stationary_part
    return mean, 0.5 * (cov + cov.T)


@jit
def exact_transition(problem: GaussianProblem, key: jax.Array, positions: jax.Array, t) -> jax.Array:
    """Sample the Langevin (Ornstein-Uhlenbeck) transition over time ``t`` exactly, for a batch ``(n, d)``."""
    eigenvalues, basis = jnp.linalg.eigh(target_precision(problem))
    decay = basis @ jnp.diag(jnp.exp(-eigenvalues * t)) @ basis.T
    noise_scale = basis * jnp.sqrt(-jnp.expm1(-2.0 * eigenvalues * t) / eigenvalues)  # cov = P^-1 (I - e^{-2Pt})
    m_star = target_mean(problem)
    normal = jax.random.normal(key, positions.shape, positions.dtype)
    return m_star + (positions - m_star) @ decay.T + normal @ noise_scale.T


@jit(static_argnames="num")
def sample_prior(problem: GaussianProblem, key: jax.Array, num: int) -> jax.Array:
    chol = jnp.linalg.cholesky(problem.prior_cov)
    normal = jax.random.normal(key, (num, problem.prior_mean.shape[0]), problem.prior_cov.dtype)
    return problem.prior_mean + normal @ chol.T


@jit(static_argnames="num")
def sample_prior_moment_matched(problem: GaussianProblem, key: jax.Array, num: int) -> jax.Array:
    """Prior samples whose empirical mean and covariance equal the prior's exactly.

    Any map that is affine in ``x`` (such as the probability-flow ODE of a Gaussian flow) then carries the
    empirical moments exactly, so its particles can be compared with the closed form without sampling noise.
    """
    normal = jax.random.normal(key, (num, problem.prior_mean.shape[0]), problem.prior_cov.dtype)
    centred = normal - normal.mean(axis=0)
    whitening = jnp.linalg.cholesky(centred.T @ centred / num)
    white = jax.scipy.linalg.solve_triangular(whitening, centred.T, lower=True).T
    return problem.prior_mean + white @ jnp.linalg.cholesky(problem.prior_cov).T


def kl_regularised_objective(problem: GaussianProblem, mean: jax.Array, cov: jax.Array) -> jax.Array:
    """Eq. 3 at ``rho = N(mean, cov)``: ``-lambda E_rho[r] + KL(rho || pi)``, in closed form."""
    d = mean.shape[0]
    expected_reward = problem.reward_linear @ mean - 0.5 * (
        jnp.trace(problem.reward_quadratic @ cov) + mean @ problem.reward_quadratic @ mean
    )
    diff = problem.prior_mean - mean
    _, logdet_prior = jnp.linalg.slogdet(problem.prior_cov)
    _, logdet_rho = jnp.linalg.slogdet(cov)
    kl = 0.5 * (
        jnp.trace(jnp.linalg.solve(problem.prior_cov, cov))
        + diff @ jnp.linalg.solve(problem.prior_cov, diff)
        - d
        + logdet_prior
        - logdet_rho
    )
    return -problem.reward_coeff * expected_reward + kl


def objective_gradient_closed_form(problem: GaussianProblem, mean, cov) -> tuple[jax.Array, jax.Array]:
    """``(dL_PPO/dm, dL_PPO/dS) = (P (m - m*), (P - S^-1) / 2)``: the Wasserstein first variation's moments."""
    precision = target_precision(problem)
    return precision @ (mean - target_mean(problem)), 0.5 * (precision - jnp.linalg.inv(cov))


@jit(static_argnames="num")
def objective_gradient_monte_carlo(problem: GaussianProblem, key: jax.Array, mean, cov, num: int):
    """Monte-Carlo ``E[grad L]`` and ``(E[hess L] - S^-1) / 2`` under ``N(mean, cov)``, per-sample terms returned.

    The Hessian term uses Stein's identity ``E[hess L] = E[S^-1 (x - m) grad L(x)^T]``, so it needs only
    gradients of ``L`` at the samples. Returns ``(mean_terms (n, d), cov_terms (n, d, d))``; their averages are
    the estimates and their spreads give the standard errors.
    """
    chol = jnp.linalg.cholesky(cov)
    normal = jax.random.normal(key, (num, mean.shape[0]), cov.dtype)
    samples = mean + normal @ chol.T
    grads = jax.vmap(jax.grad(lambda x: dto_loss(problem, x)))(samples)
    whitened = jax.scipy.linalg.cho_solve((chol, True), (samples - mean).T).T  # S^-1 (x - m)
    stein = jnp.einsum("ni,nj->nij", whitened, grads)
    hessian_terms = 0.5 * (stein + jnp.swapaxes(stein, 1, 2))
    return grads, 0.5 * (hessian_terms - jnp.linalg.inv(cov))


@jit
def euler_maruyama_moments(problem: GaussianProblem, step_size, num_steps: int, temperature=1.0):
    """Exact mean and covariance of Euler-Maruyama particles (started from the prior) after ``num_steps``.

    For a quadratic potential the scheme is linear, ``x' = x - h P (x - m*) + sqrt(2 h T) xi``, so its moments
    follow a deterministic recursion: this is the scheme's law, bias included, with no sampling noise.
    """
    precision = target_precision(problem)
    m_star = target_mean(problem)
    contraction = jnp.eye(precision.shape[0]) - step_size * precision
    noise_cov = 2.0 * step_size * temperature * jnp.eye(precision.shape[0])

    def body(_, moments):
        mean, cov = moments
        return m_star + contraction @ (mean - m_star), contraction @ cov @ contraction.T + noise_cov

    return jax.lax.fori_loop(0, num_steps, body, (problem.prior_mean, problem.prior_cov))


def probability_flow_velocity(problem: GaussianProblem, t, x: jax.Array) -> jax.Array:
    """``dx/dt = -grad L(x) - grad log rho_t(x)``, with the score of ``rho_t = N(m_t, S_t)`` in closed form."""
    mean_t, cov_t = flow_moments(problem, t)
    return -jax.grad(dto_loss_fn(problem))(x) + jnp.linalg.inv(cov_t) @ (x - mean_t)


@jit(loop_kernel=True, static_argnames="velocity")
def integrate_probability_flow(problem: GaussianProblem, positions: jax.Array, start, end, time_step,
                               velocity=probability_flow_velocity) -> jax.Array:
    """Classical RK4 on ``dx/dt = velocity(problem, t, x)`` for a batch ``(n, d)`` from ``start`` to ``end``."""
    field = jax.vmap(velocity, in_axes=(None, None, 0))
    num_steps = jnp.round((end - start) / time_step).astype(int)

    def body(i, x):
        t = start + i * time_step
        k1 = field(problem, t, x)
        k2 = field(problem, t + time_step / 2, x + time_step / 2 * k1)
        k3 = field(problem, t + time_step / 2, x + time_step / 2 * k2)
        k4 = field(problem, t + time_step, x + time_step * k3)
        return x + time_step / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    return jax.lax.fori_loop(0, num_steps, body, positions)
