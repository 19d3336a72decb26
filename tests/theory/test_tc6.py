"""TC6: straight-through one-hot, Eq. 25, gradient caching and the delta_postfix ablation (unit level)."""

import jax
import jax.numpy as jnp

from experiments.theory import toy_models
from experiments.theory.checks import tc6_straight_through as tc6
from nabla_jax.dto.straight_through import straight_through_onehot
from tests.theory.checking import assert_all_pass, assert_detects

CONFIG = tc6.FAST


def test_forward_is_exact_onehot():
    assert_all_pass(tc6.forward_rows(CONFIG))


def test_forward_check_detects_gumbel_noise():
    def noisy(z, tau):
        return straight_through_onehot(z, tau, gumbel_key=jax.random.key(0))

    assert_detects(tc6.forward_rows(CONFIG, straight_through=noisy), "forward")


def test_gradient_identities():
    assert_all_pass(tc6.gradient_rows(CONFIG))


def test_gradient_check_detects_ignored_temperature():
    def temperature_one(z, tau):  # backward always through softmax(z), whatever tau
        return straight_through_onehot(z, 1.0)

    assert_detects(tc6.gradient_rows(CONFIG, straight_through=temperature_one), "tau=0.5")


def test_gradient_vanishes_at_confident_and_uniform_tokens():
    assert_all_pass(tc6.vanishing_rows(CONFIG))


def test_cached_trajectory_is_bit_identical():
    assert_all_pass(tc6.cache_rows(CONFIG))


def test_cache_check_detects_stale_cache():
    assert_detects(tc6.cache_rows(CONFIG, invalidate=False), "cached vs recomputed")


def test_postfix_detach_removes_only_postfix_term():
    assert_all_pass(tc6.postfix_rows(CONFIG))


def test_postfix_check_detects_detaching_too_much():
    def detach_everything(policy, reward_model, reward_coeff, y):
        # stops the gradient of the whole likelihood term, delta_prefix included
        log_probs = toy_models.policy_log_probs(policy, jax.lax.stop_gradient(y))
        return -reward_coeff * toy_models.reward(reward_model, y) - jnp.sum(jax.lax.stop_gradient(y) * log_probs)

    assert_detects(tc6.postfix_rows(CONFIG, detached_loss=detach_everything), "delta_prefix")
