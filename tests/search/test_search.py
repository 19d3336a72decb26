"""The step-level searches (beam, dvts, particle filtering): the jitted, batched search equals an eager loop written
from the methods' definitions, token for token and count for count; the edge cases of each method; refusals."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import nabla_jax
from nabla_jax.evaluation.datasets import load_benchmark
from nabla_jax.generation import SamplingConfig
from nabla_jax.search import SearchConfig, StepSearch
from tests.support.search_reference import reference_search

SAMPLING = SamplingConfig(0.8, 20, 0.95)
NEW_TOKENS = 40


@pytest.fixture(scope="module")
def models():
    return nabla_jax.load_policy("testbed:policy"), nabla_jax.load_reward("testbed:prm")


@pytest.fixture(scope="module")
def prompts():
    return [p.problem for p in load_benchmark("testbed", 3).problems]


def searcher(models, method, n, width=2, **changes):
    config = SearchConfig(method, n, width, 1.0, NEW_TOKENS, SAMPLING, **changes)
    return StepSearch(*models, config)


@pytest.mark.parametrize("method, n, width", [("beam", 4, 2), ("dvts", 4, 2), ("pf", 4, 2), ("beam", 4, 4)])
def test_the_jitted_search_equals_the_eager_reference(models, prompts, method, n, width):
    search = searcher(models, method, n, width)
    results = search.generate(prompts, seed=5, batch_size=4)
    for i, (prompt, result) in enumerate(zip(prompts, results)):
        tokens, score, costs, _ = reference_search(search, prompt, seed=5, problem_id=i)
        assert result.token_ids == tokens, (method, i)
        assert result.score == pytest.approx(score, abs=1e-5)
        for name, value in costs.items():
            assert result.stats[name] == pytest.approx(value, rel=1e-6), (method, name)


def test_results_do_not_depend_on_the_batch(models, prompts):
    search = searcher(models, "pf", 4)
    together = search.generate(prompts, seed=1, batch_size=3)
    alone = [search.generate([p], seed=1, problem_ids=[i])[0] for i, p in enumerate(prompts)]
    reversed_ = search.generate(prompts[::-1], seed=1, batch_size=2, problem_ids=[2, 1, 0])[::-1]
    for a, b, c in zip(together, alone, reversed_):
        assert a.token_ids == b.token_ids == c.token_ids
        assert a.stats["flops"] == b.stats["flops"] == c.stats["flops"]


def test_one_row_is_one_step_by_step_sample_whatever_the_method(models, prompts):
    outputs = [searcher(models, method, 1, 1).generate(prompts, seed=2) for method in ("beam", "dvts", "pf")]
    for beam, dvts, pf in zip(*outputs):
        assert beam.token_ids == dvts.token_ids == pf.token_ids
        assert beam.stats["flops"] == dvts.stats["flops"] == pf.stats["flops"]


def test_particles_under_a_constant_reward_are_independent_samples(models, prompts):
    policy, prm = models
    params = dict(prm.params)
    head = dict(params["score"])
    head["out"] = {"kernel": jnp.zeros_like(head["out"]["kernel"]), "bias": jnp.asarray([0.0, 1.0], head["out"]["bias"].dtype)}
    params["score"] = head
    constant = dataclasses.replace(prm, params=params)
    search = StepSearch(policy, constant, SearchConfig("pf", 4, 4, 1.0, NEW_TOKENS, SAMPLING))
    result = search.generate(prompts[:1], seed=4)[0]
    tokens, _, _, rows = reference_search(search, prompts[0], seed=4, resample=False)
    independent, _, _, resampled_rows = reference_search(search, prompts[0], seed=4, resample=True)
    assert result.token_ids == tokens == independent
    for a, b in zip(rows, resampled_rows):
        np.testing.assert_array_equal(a.sequence, b.sequence)
    assert len({tuple(r.sequence) for r in rows}) > 1  # the particles differ: no particle was copied


def test_a_search_needs_step_scores(models):
    policy, _ = models
    with pytest.raises(ValueError, match="needs a process reward model"):
        StepSearch(policy, nabla_jax.load_reward("testbed:outcome"), SearchConfig("beam", 4))
    with pytest.raises(ValueError, match="multiple of the beam width"):
        SearchConfig("beam", 6, 4)
    with pytest.raises(ValueError, match="pf_temperature"):
        SearchConfig("pf", 4, pf_temperature=0.0)


@pytest.fixture(scope="module")
def outcome(models):
    return models[0], nabla_jax.load_reward("testbed:outcome")


def test_reward_guided_decoding_equals_the_eager_reference(outcome, prompts):
    from nabla_jax.search import GuidedConfig, RewardGuidedDecoder
    from tests.support.search_reference import reference_guided

    decoder = RewardGuidedDecoder(*outcome, GuidedConfig(3, 2.0, NEW_TOKENS))
    results = decoder.generate(prompts[:2], batch_size=2)
    reversed_ = decoder.generate(prompts[1::-1], batch_size=1)[::-1]
    for prompt, result, again in zip(prompts[:2], results, reversed_):
        tokens, costs = reference_guided(decoder, prompt)
        assert result.token_ids == tokens == again.token_ids
        assert result.stats["reward_calls"] == costs["reward_calls"] == 3 * len(tokens)
        assert result.stats["flops"] == pytest.approx(costs["flops"], rel=1e-6)


def test_reward_guided_decoding_at_weight_zero_is_greedy(outcome, prompts):
    from nabla_jax.search import GuidedConfig, RewardGuidedDecoder

    policy, reward = outcome
    results = RewardGuidedDecoder(policy, reward, GuidedConfig(4, 0.0, NEW_TOKENS)).generate(prompts)
    greedy = nabla_jax.generate(policy, prompts, max_new_tokens=NEW_TOKENS, temperature=0.0)
    assert [r.token_ids for r in results] == [g.token_ids for g in greedy]
    assert all(r.stats["reward_calls"] == 0 for r in results)
