"""TC4 (fast): a gradient-informed discrete Langevin sampler samples rho*; nabla-Reasoner does not."""

import jax
import jax.numpy as jnp
import pytest

from experiments.theory import discrete_langevin, toy_models
from experiments.theory.checks import tc4_discrete_sampler as tc4
from experiments.theory.compilation import quick_compilation
from experiments.theory.report import all_passed
from tests.theory.checking import assert_all_pass, assert_detects

CONFIG = tc4.FAST


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True), quick_compilation():
        return tc4.make_problem(CONFIG, CONFIG.reward_coeff)


def test_discrete_langevin_with_metropolis_samples_target(problem):
    assert_all_pass(tc4.sampler_rows(CONFIG, jax.random.key(0), problem))


def test_sampler_check_detects_missing_metropolis_correction(problem):
    assert_detects(tc4.sampler_rows(CONFIG, jax.random.key(0), problem, metropolis=False), "(i)")


def test_sampler_check_detects_wrong_reward_sign(problem):
    flipped = toy_models.corner_table(problem.policy, problem.reward_model, -CONFIG.reward_coeff, CONFIG.vocab,
                                      CONFIG.length)
    energy = discrete_langevin.tabulated_energy(flipped.loss, flipped.grad, CONFIG.vocab)
    assert_detects(tc4.sampler_rows(CONFIG, jax.random.key(0), problem, energy=energy), "(i)")


def test_unadjusted_sampler_is_biased(problem):
    rows = tc4.unadjusted_rows(CONFIG, jax.random.key(1), problem)
    assert all(row.measured > CONFIG.tv_factor * row.noise_floor for row in rows), rows


def reasoner_gap(rows):
    """The documented gap: TV(nabla-Reasoner, rho*) well above the floor and a reward above E_rho*[r] (lambda=1)."""
    by_name = {row.quantity.split(": ", 1)[1]: row for row in rows}
    tv = by_name["TV(emp, rho*)"]
    reward = by_name["E_emp[r] (expected: E_rho*[r])"]
    return tv.measured > 3 * tv.noise_floor and reward.measured > reward.expected


def test_nabla_reasoner_is_not_a_sampler_of_target():
    rows = tc4.reasoner_rows(CONFIG, jax.random.key(2))
    assert all(row.passed is None for row in rows)  # documentation rows, not pass/fail
    assert reasoner_gap(rows)


def test_reasoner_gap_check_fails_for_an_exact_sampler():
    """If the decoder did sample rho*, the documented gap would vanish: the gap assertion is not vacuous."""
    def exact_sampler(problem, reward_coeff, keys):
        index = jax.vmap(lambda k: jax.random.categorical(k, jnp.log(problem.target)))(keys)
        return toy_models.all_sequences(CONFIG.vocab, CONFIG.length)[index]

    rows = tc4.reasoner_rows(CONFIG, jax.random.key(2), decode_batch=exact_sampler)
    assert not reasoner_gap(rows)
    assert all_passed(rows)
