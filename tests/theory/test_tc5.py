"""TC5 (fast): noise-free descent collapses; temperature/time rescaling; the probability-flow ODE."""

import jax
import pytest

from experiments.theory import gaussian, samplers
from experiments.theory.checks import tc5_deterministic_limit as tc5
from tests.theory.checking import assert_all_pass, assert_detects

CONFIG = tc5.FAST


@pytest.fixture
def problem():
    return gaussian.random_problem(0, CONFIG.dim)


def test_descent_collapses_onto_minimisers(problem):
    assert_all_pass(tc5.descent_rows(CONFIG, jax.random.key(0), problem))


def test_descent_check_detects_noise(problem):
    def langevin(potential, step_size):
        return samplers.euler_maruyama(potential, step_size, temperature=1.0)

    assert_detects(tc5.descent_rows(CONFIG, jax.random.key(0), problem, sampler=langevin), "(a) Gaussian")


def test_descent_check_detects_wrong_reward_sign(problem):
    flipped = gaussian.dto_loss_fn(problem._replace(reward_linear=-problem.reward_linear))
    assert_detects(tc5.descent_rows(CONFIG, jax.random.key(0), problem, potential=flipped), "argmin")


def test_temperature_rescaling(problem):
    assert_all_pass(tc5.rescaling_rows(CONFIG, jax.random.key(1), problem))


def test_rescaling_check_detects_missing_time_rescale(problem):
    c = CONFIG.coefficient
    assert_detects(tc5.rescaling_rows(CONFIG, jax.random.key(1), problem, step_scale=c), "T=c")


def test_code_coefficients_stationary_laws(problem):
    assert_all_pass(tc5.coefficient_rows(CONFIG, jax.random.key(2), problem))


def test_coefficient_check_detects_wrong_temperature(problem):
    assert_detects(tc5.coefficient_rows(CONFIG, jax.random.key(2), problem, temperature=1.0), "T=c")


def test_probability_flow_matches_closed_form(problem):
    assert_all_pass(tc5.flow_rows(CONFIG, jax.random.key(3), problem))


def test_probability_flow_check_detects_missing_score(problem):
    def descent_velocity(problem, t, x):  # DTO's flow: -grad L without the entropy (score) term
        return -jax.grad(gaussian.dto_loss_fn(problem))(x)

    assert_detects(tc5.flow_rows(CONFIG, jax.random.key(3), problem, velocity=descent_velocity), "(c)")
