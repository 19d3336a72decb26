"""Empirical distributions, distances and standard errors used by the checks."""

from __future__ import annotations


import jax
import jax.numpy as jnp

from experiments.theory.compilation import jit


@jit
def histogram(samples: jax.Array, edges: jax.Array) -> jax.Array:
    """Fraction of ``samples`` in each bin ``[edges[k], edges[k+1])``; samples outside the edges are dropped,
    so the result sums to the fraction inside."""
    bins = jnp.searchsorted(edges, samples, side="right") - 1
    inside = (bins >= 0) & (bins < edges.shape[0] - 1)
    counts = jnp.bincount(jnp.where(inside, bins, 0), weights=inside.astype(samples.dtype), length=edges.shape[0] - 1)
    return counts / samples.shape[0]


@jit(static_argnames="num_states")
def empirical_distribution(states: jax.Array, num_states: int) -> jax.Array:
    """Frequencies of integer states ``0 .. num_states - 1``."""
    return jnp.bincount(states.reshape(-1), length=num_states) / states.size


def total_variation(p: jax.Array, q: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(jnp.abs(p - q))


def entropy(p: jax.Array) -> jax.Array:
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def mean_and_standard_error(terms: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Average over the leading axis of i.i.d. per-sample terms, and its standard error."""
    n = terms.shape[0]
    return terms.mean(axis=0), terms.std(axis=0, ddof=1) / jnp.sqrt(n)


@jit
def moment_errors(samples: jax.Array, mean: jax.Array, cov: jax.Array) -> dict[str, jax.Array]:
    """Errors of the empirical mean and covariance of ``samples (n, d)`` against ``(mean, cov)``, with measured
    standard errors (the spread of the per-particle terms ``x`` and ``(x - xbar)(x - xbar)^T``).

    ``mean_z`` and ``cov_z`` are the largest errors in units of their own standard error (over the upper
    triangle for the covariance).
    """
    sample_mean, mean_se = mean_and_standard_error(samples)
    centred = samples - sample_mean
    outer = jnp.einsum("ni,nj->nij", centred, centred)
    sample_cov, cov_se = mean_and_standard_error(outer)
    upper = jnp.triu(jnp.ones_like(cov, dtype=bool))
    mean_error = sample_mean - mean
    cov_error = sample_cov - cov
    return {
        "mean_abs": jnp.max(jnp.abs(mean_error)),
        "mean_se": jnp.max(mean_se),
        "cov_rel_frobenius_se": jnp.linalg.norm(cov_se) / jnp.linalg.norm(cov),
        "mean_z": jnp.max(jnp.abs(mean_error) / mean_se),
        "cov_rel_frobenius": jnp.linalg.norm(cov_error) / jnp.linalg.norm(cov),
        "cov_z": jnp.max(jnp.where(upper, jnp.abs(cov_error) / cov_se, 0.0)),
        "sample_mean": sample_mean,
        "sample_cov": sample_cov,
    }


@jit
def two_sample_moment_z(first: jax.Array, second: jax.Array) -> dict[str, jax.Array]:
    """Largest difference between two independent samples' means and covariances, in units of the standard error
    of the difference (``sqrt(SE_1^2 + SE_2^2)``, each measured from its sample)."""
    def moments(x):
        mean, mean_se = mean_and_standard_error(x)
        centred = x - mean
        cov, cov_se = mean_and_standard_error(jnp.einsum("ni,nj->nij", centred, centred))
        return mean, mean_se, cov, cov_se

    m1, m1_se, c1, c1_se = moments(first)
    m2, m2_se, c2, c2_se = moments(second)
    upper = jnp.triu(jnp.ones_like(c1, dtype=bool))
    return {
        "mean_z": jnp.max(jnp.abs(m1 - m2) / jnp.sqrt(m1_se**2 + m2_se**2)),
        "cov_z": jnp.max(jnp.where(upper, jnp.abs(c1 - c2) / jnp.sqrt(c1_se**2 + c2_se**2), 0.0)),
    }

