"""TC3 (fast): first variation = policy gradient, mirror descent -> rho*, token-level factorisation of rho*."""

import jax
import jax.numpy as jnp

from experiments.theory import tabular
from experiments.theory.checks import tc3_tabular as tc3
from tests.theory.checking import assert_all_pass, assert_detects


def test_tabular_identities_hold():
    assert_all_pass(tc3.run(tc3.FAST, seed=0))


def policy_gradient_without_log_ratio(theta, problem):
    """Drops log(rho / pi) from the first variation: the reward-only policy gradient."""
    rho = jnp.exp(tabular.flat_log_softmax(theta))
    phi = -problem.reward_coeff * problem.reward
    return rho * (phi - jnp.sum(rho * phi))


def autoregressive_gradient_wrong_sign(theta_tables, problem):
    flipped = problem._replace(reward_coeff=-problem.reward_coeff)
    return tabular.autoregressive_policy_gradient(theta_tables, flipped)


def reinforce_without_centring(key, theta, problem, num):
    """Uses 1[y = j] Phi(y) as the per-sample term (forgets d log rho / d theta = e_y - rho): biased."""
    mean, standard_error = tabular.reinforce_estimate(key, theta, problem, num)
    rho = jnp.exp(tabular.flat_log_softmax(theta))
    phi = tabular.first_variation(jnp.log(rho), problem)
    return mean + rho * jnp.sum(rho * phi), standard_error


def mirror_step_without_step_size_on_reward(log_rho, problem, step_size):
    log_pi = tabular.sequence_log_probs(problem.log_conditionals)
    logits = (1 - step_size) * log_rho + step_size * log_pi + problem.reward_coeff * problem.reward
    return logits - jax.nn.logsumexp(logits)


def token_policy_with_mean_reward_values(problem):
    """V = lambda E_pi[r | y_<=t] instead of log E_pi[exp(lambda r) | y_<=t] (the linearised soft value)."""
    values = [problem.reward_coeff * problem.reward]
    for table in reversed(problem.log_conditionals):
        values.append(jnp.sum(jnp.exp(table) * values[-1], axis=-1))
    values = values[::-1]
    return [table + value - prev[..., None] for table, value, prev in
            zip(problem.log_conditionals, values[1:], values[:-1])]


def test_each_broken_identity_is_detected():
    broken = tc3.Subject(
        policy_gradient=policy_gradient_without_log_ratio,
        autoregressive_policy_gradient=autoregressive_gradient_wrong_sign,
        reinforce_estimate=reinforce_without_centring,
        mirror_descent_step=mirror_step_without_step_size_on_reward,
        token_level_log_policy=token_policy_with_mean_reward_values,
    )
    rows = tc3.run(tc3.FAST, seed=0, subject=broken)
    for marker in ("(a) tabular", "(a) autoregressive", "(b) REINFORCE", "(c) mirror", "(d)"):
        assert_detects(rows, marker)
