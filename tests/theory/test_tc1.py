"""TC1 (fast): Gaussian-quadratic case, Langevin particles against the closed-form Wasserstein gradient flow."""

import jax
import pytest

from experiments.theory import gaussian, samplers
from experiments.theory.checks import tc1_gaussian as tc1
from tests.theory.checking import assert_all_pass, assert_detects

CONFIG = tc1.FAST


@pytest.fixture
def problem():
    return tc1.problem_for(CONFIG, seed=0)


def key(i):
    return jax.random.key(100 + i)


def flipped_reward(problem):
    """The classic sign slip: the particles follow +b where the theory has -b."""
    return problem._replace(reward_linear=-problem.reward_linear)


def test_exact_transitions_match_closed_form(problem):
    assert_all_pass(tc1.exact_flow_rows(CONFIG, key(0), problem))


def test_exact_transitions_detect_wrong_reward_sign(problem):
    assert_detects(tc1.exact_flow_rows(CONFIG, key(0), problem, particle_problem=flipped_reward(problem)), "mean")


def test_mala_matches_closed_form(problem):
    assert_all_pass(tc1.mala_rows(CONFIG, key(1), problem))


def test_mala_check_detects_missing_metropolis_correction(problem):
    # Euler-Maruyama is MALA without the accept/reject step: biased at the stationary step size
    assert_detects(tc1.mala_rows(CONFIG, key(1), problem, sampler=samplers.euler_maruyama), "t=inf: cov")


def test_euler_maruyama_bias_is_first_order(problem):
    assert_all_pass(tc1.euler_maruyama_rows(CONFIG, key(2), problem))


def test_euler_maruyama_check_detects_wrong_noise_scale(problem):
    # temperature 1/2 is the noise sqrt(h) xi instead of sqrt(2 h) xi
    assert_detects(tc1.euler_maruyama_rows(CONFIG, key(2), problem, temperature=0.5), "vs EM law: cov")


def test_first_variation_matches_expected_gradient(problem):
    assert_all_pass(tc1.gradient_rows(CONFIG, key(3), problem))


def test_first_variation_check_detects_wrong_reward_sign(problem):
    def wrong_sign(problem, mean, cov):  # +lambda E[r] + KL instead of -lambda E[r] + KL
        flipped = problem._replace(reward_coeff=-problem.reward_coeff)
        return gaussian.kl_regularised_objective(flipped, mean, cov)

    assert_detects(tc1.gradient_rows(CONFIG, key(3), problem, objective=wrong_sign), "autodiff vs MC")
