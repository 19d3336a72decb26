"""TC2 (fast): 1-D Fokker-Planck (Scharfetter-Gummel) <-> Wasserstein gradient flow <-> MALA particles."""

import jax
import pytest

from experiments.theory import fokker_planck, mixture_1d, samplers
from experiments.theory.checks import tc2_fokker_planck as tc2
from experiments.theory.compilation import quick_compilation
from tests.theory.checking import assert_all_pass, assert_detects

CONFIG = tc2.FAST
LAMBDA = CONFIG.reward_coeffs[0]


@pytest.fixture(scope="module")
def solved():
    with jax.enable_x64(True), quick_compilation():
        problem = mixture_1d.default_problem(LAMBDA)
        return problem, tc2.solve_pde(CONFIG, problem)


def reversed_drift_solver(potential, width, time_step):
    """A sign slip in the flux: the drift pushes up the potential (stationary law exp(+L))."""
    return fokker_planck.implicit_euler_solver(-potential, width, time_step)


def test_pde_dissipates_free_energy_and_converges(solved):
    problem, result = solved
    assert_all_pass(tc2.pde_rows(CONFIG, problem, result))


def test_pde_check_detects_reversed_drift(solved):
    problem, _ = solved
    broken = tc2.solve_pde(CONFIG, problem, solver=reversed_drift_solver)
    rows = tc2.pde_rows(CONFIG, problem, broken)
    assert_detects(rows, "(a)")
    assert_detects(rows, "(c)")


def test_particles_match_pde(solved):
    problem, result = solved
    assert_all_pass(tc2.particle_rows(CONFIG, jax.random.key(0), problem, result))


def test_particle_check_detects_wrong_reward_sign(solved):
    problem, result = solved
    flipped = mixture_1d.dto_loss_fn(problem._replace(reward_coeff=-problem.reward_coeff))
    rows = tc2.particle_rows(CONFIG, jax.random.key(0), problem, result, potential=flipped, stationary_phase=False)
    assert_detects(rows, "(d)")


def test_particle_check_detects_dropped_noise(solved):
    problem, result = solved

    def noise_free(potential, step_size):
        return samplers.gradient_descent(potential, step_size)

    rows = tc2.particle_rows(CONFIG, jax.random.key(0), problem, result, sampler=noise_free, stationary_phase=False)
    assert_detects(rows, "(d)")
