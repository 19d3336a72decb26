"""The sequence space of a toy autoregressive model (TC3, TC4): ``V`` tokens, length ``T``, ``V^T`` sequences.

A distribution over sequences is an array of shape ``(V,) * T``; an autoregressive model is a list of
conditional tables, table ``t`` of shape ``(V,) * (t + 1)`` holding ``log pi(y_t | y_<t)``. Here the objects of
Eq. 3 are exact sums: ``L_PPO(rho) = sum_y rho (-lambda r + log rho / pi)``, its first variation
``Phi = -lambda r + log(rho / pi)``, the mirror-descent (Fisher-Rao) flow, and the token-level factorisation of
``rho* ∝ pi exp(lambda r)`` through the soft values ``V(y_<=t) = log E_pi[exp(lambda r) | y_<=t]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.theory.compilation import jit


class TabularProblem(NamedTuple):
    log_conditionals: tuple[jax.Array, ...]  # table t: (V,) * (t + 1), log pi(y_t | y_<t)
    reward: jax.Array  # (V,) * T
    reward_coeff: jax.Array


def random_problem(seed: int, vocab: int, length: int, reward_coeff: float = 1.0, logit_scale: float = 1.0
                   ) -> TabularProblem:
    """Random autoregressive tables and a random reward table (NumPy-built: no compilation)."""
    rng = np.random.default_rng(seed)
    tables = tuple(
        jax.nn.log_softmax(jnp.asarray(logit_scale * rng.standard_normal((vocab,) * (t + 1))), axis=-1)
        for t in range(length)
    )
    return TabularProblem(tables, jnp.asarray(rng.standard_normal((vocab,) * length)),
                          jnp.asarray(reward_coeff, jnp.result_type(float)))


def sequence_log_probs(log_conditionals) -> jax.Array:
    """``log pi(y) = sum_t log pi(y_t | y_<t)`` for every sequence, shape ``(V,) * T``."""
    length = len(log_conditionals)
    total = 0.0
    for t, table in enumerate(log_conditionals):
        total = total + table.reshape(table.shape + (1,) * (length - t - 1))
    return total


def target_log_probs(problem: TabularProblem) -> jax.Array:
    """``log rho*``, ``rho* ∝ pi exp(lambda r)``."""
    logits = sequence_log_probs(problem.log_conditionals) + problem.reward_coeff * problem.reward
    return logits - jax.nn.logsumexp(logits)


def kl_objective(log_rho: jax.Array, problem: TabularProblem) -> jax.Array:
    """Eq. 3: ``-E_rho[lambda r] + KL(rho || pi)``."""
    log_pi = sequence_log_probs(problem.log_conditionals)
    return jnp.sum(jnp.exp(log_rho) * (-problem.reward_coeff * problem.reward + log_rho - log_pi))


def first_variation(log_rho: jax.Array, problem: TabularProblem) -> jax.Array:
    """``Phi = dL_PPO/drho - 1 = -lambda r + log(rho / pi)`` (the constant 1 drops out of every use)."""
    return -problem.reward_coeff * problem.reward + log_rho - sequence_log_probs(problem.log_conditionals)


def flat_log_softmax(theta: jax.Array) -> jax.Array:
    """Tabular policy: one logit per sequence, softmax over all of them."""
    return jax.nn.log_softmax(theta.reshape(-1)).reshape(theta.shape)


def policy_gradient(theta: jax.Array, problem: TabularProblem) -> jax.Array:
    """Closed form ``d L_PPO(softmax theta) / d theta = rho (Phi - E_rho Phi)``."""
    log_rho = flat_log_softmax(theta)
    rho, phi = jnp.exp(log_rho), first_variation(log_rho, problem)
    return rho * (phi - jnp.sum(rho * phi))


def autoregressive_log_probs(theta_tables) -> jax.Array:
    return sequence_log_probs([jax.nn.log_softmax(table, axis=-1) for table in theta_tables])


def autoregressive_policy_gradient(theta_tables, problem: TabularProblem) -> list[jax.Array]:
    """Closed form for per-prefix logits: ``E_rho[Phi(y) d log rho(y) / d theta_t[h, v]]``, i.e.

        grad_t[h, v] = sum_{y: y_<t = h} rho(y) Phi(y) (1[y_t = v] - rho_t(v | h)),

    written as marginal sums over the positions after ``t``.
    """
    length = len(theta_tables)
    log_rho = autoregressive_log_probs(theta_tables)
    weighted = jnp.exp(log_rho) * first_variation(log_rho, problem)
    grads = []
    for t, table in enumerate(theta_tables):
        through_t = weighted.sum(axis=tuple(range(t + 1, length)))  # (V,) * (t + 1): sum over y_>t
        conditional = jax.nn.softmax(table, axis=-1)
        grads.append(through_t - through_t.sum(axis=-1, keepdims=True) * conditional)
    return grads


def reinforce_estimate(key: jax.Array, theta: jax.Array, problem: TabularProblem, num: int):
    """Score-function estimate of ``policy_gradient`` from ``num`` samples of ``rho``, and its standard error.

    The per-sample term for sequence ``j`` is ``(1[y = j] - rho_j) Phi(y)``; its mean and spread depend on the
    samples only through their counts, so ``num`` can be large.
    """
    log_rho = flat_log_softmax(theta).reshape(-1)
    rho, phi = jnp.exp(log_rho), first_variation(log_rho.reshape(theta.shape), problem).reshape(-1)
    samples = jax.random.choice(key, rho.shape[0], (num,), p=rho)
    frequency = jnp.bincount(samples, length=rho.shape[0]) / num
    indicator_minus_rho = jnp.eye(rho.shape[0]) - rho[None, :]  # [sampled y, component j]
    terms = indicator_minus_rho * phi[:, None]
    mean = frequency @ terms
    second = frequency @ terms**2
    standard_error = jnp.sqrt(jnp.maximum(second - mean**2, 0.0) / (num - 1))
    return mean.reshape(theta.shape), standard_error.reshape(theta.shape)


def mirror_descent_step(log_rho: jax.Array, problem: TabularProblem, step_size) -> jax.Array:
    """``rho' ∝ rho^(1 - eta) pi^eta exp(eta lambda r)``: the Fisher-Rao (natural-gradient) step on L_PPO."""
    log_pi = sequence_log_probs(problem.log_conditionals)
    logits = (1 - step_size) * log_rho + step_size * (log_pi + problem.reward_coeff * problem.reward)
    return logits - jax.nn.logsumexp(logits)


@jit(static_argnames=("step", "num_steps"))
def mirror_descent(log_rho: jax.Array, problem: TabularProblem, step_size, num_steps: int, step=mirror_descent_step
                   ) -> jax.Array:
    """``num_steps`` steps of ``step``; returns every iterate, ``(num_steps + 1,) + log_rho.shape``."""
    def body(current, _):
        new = step(current, problem, step_size)
        return new, new

    _, iterates = jax.lax.scan(body, log_rho, None, length=num_steps)
    return jnp.concatenate([log_rho[None], iterates])


def soft_values(problem: TabularProblem) -> list[jax.Array]:
    """``V_t(y_<=t) = log E_pi[exp(lambda r) | y_<=t]`` for ``t = 0 .. T-1`` (``V_{T-1} = lambda r``), by the
    backward recursion ``V_{t-1}(y_<t) = log sum_v pi(v | y_<t) exp(V_t(y_<t, v))``. The last entry of the
    returned list is ``V_{-1} = log Z``."""
    values = [problem.reward_coeff * problem.reward]
    for table in reversed(problem.log_conditionals):
        values.append(jax.nn.logsumexp(table + values[-1], axis=-1))
    return values[::-1][1:] + [values[-1]]


def token_level_log_policy(problem: TabularProblem) -> list[jax.Array]:
    """``log pi*(y_t | y_<t) = log pi(y_t | y_<t) + V_t(y_<=t) - V_{t-1}(y_<t)``: the KL-optimal policy one token
    at a time. Its first table is the exact target a 'perfect' nabla-Reasoner would sample the first token from."""
    values = soft_values(problem)
    previous = [values[-1]] + values[:-2]  # V_{t-1}, with V_{-1} = log Z
    return [table + value - prev[..., None] for table, value, prev in
            zip(problem.log_conditionals, values[:-1], previous)]
