"""Sampling: official semantics (temperature -> top-k -> top-p), exactness of the sampler, edge cases, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nabla_jax.generation.sampling import (
    SamplingConfig, filter_logits, filtered_distribution, first_argmax, sample_token,
)

ALPHA = 1e-3  # chi-square significance: a correct sampler fails with probability 0.1% (the seed is fixed)


def official_kept(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """Independent numpy transcription of the official rule (for logits without ties)."""
    x = logits.astype(np.float64) / temperature
    keep = np.ones_like(x, bool)
    if top_k > 0:
        keep &= x >= np.sort(x)[::-1][min(top_k, x.size) - 1]
    if top_p < 1.0:
        masked = np.where(keep, x, -np.inf)
        order = np.argsort(-masked)
        probs = np.exp(masked[order] - masked[order].max())
        probs /= probs.sum()
        before = np.concatenate([[0.0], np.cumsum(probs)[:-1]])  # mass strictly before each ranked token
        nucleus = np.zeros_like(keep)
        nucleus[order[before <= top_p]] = True
        keep &= nucleus
    return keep


def exact_probs(logits, temperature, keep):
    x = np.where(keep, logits.astype(np.float64) / temperature, -np.inf)
    p = np.exp(x - x.max())
    return p / p.sum()


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw(logits, n, cfg):
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(1234), i))(jnp.arange(n))
    return jax.vmap(lambda k: sample_token(logits, k, cfg))(keys)


# jitted once per (shape, settings): eager calls would compile every primitive separately
dist = jax.jit(filtered_distribution, static_argnums=(1, 2, 3))
sample = jax.jit(sample_token, static_argnums=(2, 3, 4))


def draw(logits, n, cfg) -> np.ndarray:
    """n samples with keys fold_in(key(1234), i)."""
    return np.asarray(_draw(jnp.asarray(logits), n, cfg))


SETTINGS = [
    SamplingConfig(1.0, 0, 1.0),
    SamplingConfig(0.7, 0, 0.8),
    SamplingConfig(1.3, 5, 1.0),
    SamplingConfig(0.6, 6, 0.9),
]


@pytest.mark.parametrize("cfg", SETTINGS, ids=str)
def test_filtered_support_matches_official_rule(cfg):
    rng = np.random.default_rng(0)
    for _ in range(5):
        logits = rng.normal(0.0, 2.0, size=50).astype(np.float32)
        keep = official_kept(logits, cfg.temperature, cfg.top_k, cfg.top_p)
        probs = np.asarray(dist(jnp.asarray(logits), cfg))
        np.testing.assert_array_equal(probs > 0, keep)
        np.testing.assert_allclose(probs, exact_probs(logits, cfg.temperature, keep), atol=1e-6)


@pytest.mark.parametrize("cfg", SETTINGS, ids=str)
def test_empirical_frequencies_match_filtered_distribution(cfg):
    logits = jnp.asarray([2.0, 1.5, 1.2, 0.9, 0.5, 0.3, 0.0, -0.4, -1.0, -2.0], jnp.float32)
    n = 20000
    counts = np.bincount(draw(logits, n, cfg), minlength=logits.shape[0])
    probs = np.asarray(dist(logits, cfg), np.float64)
    assert counts[probs == 0].sum() == 0, "sampled a filtered-out token"
    support = probs > 0
    expected = n * probs[support] / probs[support].sum()
    _, p_value = stats.chisquare(counts[support], expected)
    assert p_value > ALPHA, (counts, expected)
    if cfg.temperature != 1.0:  # the test has power: the unscaled distribution is rejected
        wrong = np.asarray(dist(logits, SamplingConfig(1.0, cfg.top_k, cfg.top_p)), np.float64)
        if (wrong > 0).sum() == support.sum() and ((wrong > 0) == support).all():
            assert stats.chisquare(counts[support], n * wrong[support] / wrong[support].sum())[1] < ALPHA


def test_top_k_one_and_tiny_top_p_are_argmax():
    logits = jnp.asarray([0.1, 2.5, 2.4, -1.0, 0.0])
    for cfg in (SamplingConfig(1.0, 1, 1.0), SamplingConfig(1.0, 0, 1e-6), SamplingConfig(5.0, 0, 1e-6)):
        assert set(draw(logits, 200, cfg).tolist()) == {1}
        np.testing.assert_array_equal(np.asarray(dist(logits, cfg)), [0, 1, 0, 0, 0])


def test_ties_are_kept_together():
    logits = jnp.asarray([1.0, 3.0, 0.0, 3.0, 2.0])
    # top-k 1 keeps every token tied with the largest; tiny top-p likewise
    for cfg in (SamplingConfig(1.0, 1, 1.0), SamplingConfig(1.0, 0, 1e-6), SamplingConfig(1.0, 2, 1.0)):
        np.testing.assert_allclose(np.asarray(dist(logits, cfg)), [0, 0.5, 0, 0.5, 0], atol=1e-7)
        assert set(draw(logits, 400, cfg).tolist()) == {1, 3}
    # top-k 3 cuts at value 2.0: the two 3.0s and the 2.0 stay
    assert np.count_nonzero(np.asarray(dist(logits, SamplingConfig(1.0, 3, 1.0)))) == 3
    # greedy breaks ties towards the lowest id, with or without a key
    greedy = SamplingConfig(0.0)
    assert int(sample(logits, jax.random.key(0), greedy)) == 1
    assert int(sample(logits, None, 0.0)) == 1
    np.testing.assert_array_equal(np.asarray(dist(logits, greedy)), [0, 1, 0, 0, 0])


def test_first_argmax_equals_argmax_with_ties_infinities_and_nans():
    """The greedy pick's two-reduction argmax returns what ``jnp.argmax`` does on every row kind, in jit and eagerly."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 50)).astype(np.float32)
    x[1, [4, 30]] = x[1].max() + 1  # tied maxima: the first
    x[2, [7, 20]] = np.inf  # two +inf
    x[3] = -np.inf  # nothing but -inf: slot 0
    x[4, [12, 40]] = np.nan  # NaN: the first NaN, as argmax
    x[5, 3], x[5, 9] = np.inf, np.nan  # a NaN wins over +inf
    x[6, -1] = x[6].max() + 1  # the last slot
    x[7] = 0.0  # all equal
    x[8, 0] = np.float32(3.0e38)  # near the float32 maximum
    want = np.asarray(jnp.argmax(jnp.asarray(x), axis=-1))
    for fn in (first_argmax, jax.jit(first_argmax)):
        got = np.asarray(fn(jnp.asarray(x)))
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(first_argmax(jnp.asarray(x[:, None, :]))), want[:, None])  # any rank


def test_off_settings_and_large_k():
    logits = jnp.asarray([0.3, -1.0, 2.0, 0.7])
    full = jax.nn.softmax(logits)
    np.testing.assert_allclose(dist(logits, 1.0, 0, 1.0), full, rtol=1e-6)
    np.testing.assert_allclose(dist(logits, 1.0, 100, 1.0), full, rtol=1e-6)
    np.testing.assert_allclose(dist(logits, 1.0, None, None), full, rtol=1e-6)
    assert np.isneginf(np.asarray(filter_logits(logits, 1.0, 2, 1.0))).sum() == 2


def test_deterministic_and_row_wise():
    logits = jax.random.normal(jax.random.key(3), (4, 30)) * 2
    keys = jax.random.split(jax.random.key(7), 4)
    cfg = SamplingConfig(0.8, 10, 0.9)
    rows = [int(sample(logits[i], keys[i], cfg)) for i in range(4)]
    batched = jax.jit(jax.vmap(lambda l, k: sample_token(l, k, cfg)))
    assert batched(logits, keys).tolist() == rows
    assert batched(logits, keys).tolist() == rows  # same keys, same tokens
    # [..., V] input works without vmap, with one key for the whole array
    assert sample(logits, keys[0], cfg).shape == (4,)
    # the filtered distribution of a batch is the per-row one
    np.testing.assert_allclose(dist(logits, cfg)[2], dist(logits[2], cfg))


@pytest.mark.parametrize(
    "temperature, top_k, top_p, match",
    [
        (-0.1, 0, 1.0, "temperature"),
        (float("nan"), 0, 1.0, "temperature"),
        (1.0, -1, 1.0, "top_k"),
        (1.0, 2.5, 1.0, "top_k"),
        (1.0, 0, 0.0, "top_p"),
        (1.0, 0, 1.5, "top_p"),
        (1.0, 0, -0.2, "top_p"),
    ],
)
def test_bad_settings_raise(temperature, top_k, top_p, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(temperature, top_k, top_p)
    with pytest.raises(ValueError, match=match):
        sample_token(jnp.zeros(4), jax.random.key(0), temperature, top_k, top_p)
