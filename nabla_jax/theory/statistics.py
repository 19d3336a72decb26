"""Empirical distributions, distances and standard errors used by the checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def histogram(samples: jax.Array, edges: jax.Array) -> jax.Array:
    """Fraction of ``samples`` in each bin ``[edges[k], edges[k+1])``; samples outside the edges are dropped,
    so the result sums to the fraction inside."""
    bins = jnp.searchsorted(edges, samples, side="right") - 1
    inside = (bins >= 0) & (bins < edges.shape[0] - 1)
    counts = jnp.bincount(jnp.where(inside, bins, 0), weights=inside, length=edges.shape[0] - 1)
    return counts / samples.shape[0]


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


@jax.jit
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
        "mean_z": jnp.max(jnp.abs(mean_error) / mean_se),
        "cov_rel_frobenius": jnp.linalg.norm(cov_error) / jnp.linalg.norm(cov),
        "cov_z": jnp.max(jnp.where(upper, jnp.abs(cov_error) / cov_se, 0.0)),
        "sample_mean": sample_mean,
        "sample_cov": sample_cov,
    }


def max_z_score(estimate: jax.Array, standard_error: jax.Array, expected: jax.Array) -> jax.Array:
    return jnp.max(jnp.abs(estimate - expected) / standard_error)
