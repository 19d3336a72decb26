"""The DTO state machine: gradient caching is exact, per-row counters under the batch-level cond, the relaxed
objective decreases, a reward that prefers a token moves the first argmax to it, non-finite values stop a row,
a batch equals one problem at a time, and the latents embedder (likelihood only)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nabla_jax.dto import (
    DTOConfig,
    NonFiniteLossError,
    build_prefix_cache,
    dto_init,
    dto_optimize,
    dto_step,
    dto_step_single,
    make_models,
    stack,
)
from nabla_jax.dto.api import raise_if_nonfinite
from nabla_jax.models import decoder
from tests.support.dto_common import AHEAD, FAST_COMPILE, CASES, cases, load_pair, max_diff, rollout_init

CONFIG = DTOConfig(max_iters=6, learning_rate=0.1)  # official "first" + "logits", short and fast
TARGET = 43  # the token the constructed reward prefers


@functools.partial(jax.jit, static_argnames="config", compiler_options=FAST_COMPILE)
def start(models, config, problems, init):
    caches = jax.vmap(lambda p: build_prefix_cache(models, p, init.shape[1]))(problems)
    return caches, jax.vmap(lambda p, x: dto_init(models, config, p, x))(problems, init)


step = jax.jit(dto_step, static_argnums=1, compiler_options=FAST_COMPILE)


@functools.partial(jax.jit, static_argnums=1, compiler_options=FAST_COMPILE)
def vmapped_step(models, config, problems, caches, state):
    """The single-problem step vmapped over the batch (its cond becomes a select), as an outer loop would use it."""
    return jax.vmap(lambda p, c, s: dto_step_single(models, config, p, c, s))(problems, caches, state)


def run(models, config, problems, init, force_full=False, steps=None, state=None, caches=None, step_fn=step):
    """Step a batch in Python; ``force_full`` drops the gradient cache before every step (DTO without caching)."""
    if state is None:
        caches, state = start(models, config, problems, init)
    for _ in range(config.max_iters if steps is None else steps):
        if force_full:
            state = state._replace(cache_valid=jnp.zeros_like(state.cache_valid))
        state = step_fn(models, config, problems, caches, state)
    return caches, state


def preferring(models, target):
    """The reward model rebuilt so that its score prefers ``target`` anywhere in the response: uniform attention
    (q = 0) carries every token's value to the last one, the MLPs are off, and the score head reads the direction
    the target's value takes there."""
    params = models.rm_params
    layers = params["layers"]
    attn, mlp = layers["attn"], layers["mlp"]
    attn = dict(
        attn,
        q_proj=jax.tree.map(jnp.zeros_like, attn["q_proj"]),
        v_proj=dict(attn["v_proj"], bias=jnp.zeros_like(attn["v_proj"]["bias"])),
    )
    mlp = dict(mlp, down_proj=jax.tree.map(jnp.zeros_like, mlp["down_proj"]))
    cfg = models.rm_config
    e = params["embed"]["embedding"][target]
    value = (e * jax.lax.rsqrt(jnp.mean(e * e))) @ attn["v_proj"]["kernel"][0]
    groups = cfg.num_heads // cfg.num_kv_heads
    heads = jnp.repeat(value.reshape(cfg.num_kv_heads, cfg.head_dim), groups, axis=0).reshape(-1)
    direction = heads @ attn["o_proj"]["kernel"][0]
    params = dict(params, layers=dict(layers, attn=attn, mlp=mlp),
                  score={"kernel": 5.0 * (direction / jnp.linalg.norm(direction))[:, None]})
    return make_models(models.lm_config, models.lm_params, models.rm_config, params, models.reward_index)


@pytest.fixture(scope="module")
def setup(hf_checkpoint):
    policy, reward, models = load_pair(hf_checkpoint)
    return policy, reward, models, cases(policy, reward, models)


@pytest.fixture(scope="module")
def constructed(setup):
    """Row 0: the preferred token starts second at position 0 (0.2 below the top); row 1: the rollout with a
    confident first position (logits x 5), which these few steps cannot flip."""
    policy, reward, models, problems_ = setup
    models = preferring(models, TARGET)
    first = problems_[0][1][0]
    init0 = problems_[0][1].at[0, TARGET].set(first.max() - 0.2)
    problems = stack([problems_[0][0], problems_[1][0]])
    init1 = problems_[1][1].at[0].multiply(5.0)
    init = jnp.stack([init0, init1])
    _, cached = run(models, CONFIG, problems, init)
    _, full = run(models, CONFIG, problems, init, force_full=True)
    return models, problems, init, cached, full


def test_gradient_caching_is_exact_and_counted_per_row(constructed):
    models, problems, init, cached, full = constructed
    assert max_diff(cached.variables, full.variables) <= 1e-6
    np.testing.assert_array_equal(cached.token_ids, full.token_ids)
    np.testing.assert_array_equal(full.full_steps, [6, 6])
    own = np.asarray(cached.full_steps)
    assert own.sum() < 12 and np.all(own >= 1)
    np.testing.assert_array_equal(own + np.asarray(cached.cached_steps), [6, 6])
    # the batch ran the models whenever some row needed them; each row counts its own need separately
    executed = np.asarray(cached.executed_full_steps)
    assert executed[0] == executed[1] and own.max() <= executed[0] <= own.sum()
    assert own[0] != own[1]  # the rows needed different numbers of full steps, yet match their full-step runs
    # the schedule (and Adam's count) advanced on cached steps too
    counts = [leaf for leaf in jax.tree_util.tree_leaves(cached.opt_state) if leaf.dtype == jnp.int32]
    assert counts and all(np.all(np.asarray(c) == 6) for c in counts)


def test_reward_preferring_a_token_moves_the_first_argmax(constructed):
    models, problems, init, cached, full = constructed
    assert int(jnp.argmax(init[0, 0])) != TARGET
    assert int(cached.token_ids[0, 0]) == TARGET
    trace = np.asarray(cached.loss_trace[0])
    assert trace[-1] < trace[0] - 0.1  # the hard loss (mostly -reward) dropped when the token changed
    # only position 0 moves ("first"): the other positions keep the rollout's argmax
    np.testing.assert_array_equal(cached.token_ids[:, 1:], jnp.argmax(init, -1)[:, 1:])
    assert cached.variables.shape == (2, 1, models.vocab_size) and cached.variables.dtype == jnp.float32


def test_relaxed_objective_decreases_while_the_tokens_stay(constructed):
    _, _, _, cached, _ = constructed
    loss, relaxed = np.asarray(cached.loss_trace), np.asarray(cached.relaxed_trace)
    same = loss[:, 1:] == loss[:, :-1]  # no token changed between t and t+1: same hard loss and cached gradient
    assert same.sum() >= 4
    assert np.all((relaxed[:, 1:] < relaxed[:, :-1])[same])


def test_nonfinite_gradient_stops_only_that_row(constructed):
    models, problems, init, _, _ = constructed
    caches, state = run(models, CONFIG, problems, init, steps=2)
    before = state.variables[1]
    state = state._replace(
        grad_y=state.grad_y.at[1, 0, 5].set(jnp.nan), cache_valid=state.cache_valid.at[1].set(True)
    )
    _, state = run(models, CONFIG, problems, init, steps=4, state=state, caches=caches)
    np.testing.assert_array_equal(state.nonfinite_step, [-1, 2])
    np.testing.assert_array_equal(state.step, [6, 2])
    np.testing.assert_array_equal(state.variables[1], before)
    assert bool(jnp.all(jnp.isfinite(state.variables)))
    with pytest.raises(NonFiniteLossError, match="DTO problem 1: .* non-finite at step 2 of 6"):
        raise_if_nonfinite(state, CONFIG)


def test_batch_equals_one_problem_at_a_time(setup):
    policy, reward, models, problems_ = setup
    problems = stack([p[0] for p in problems_])
    init = jnp.stack([p[1] for p in problems_])
    _, batch = run(models, CONFIG, problems, init)
    for i, ((prompt, committed, _), (_, row_init, lm, ahead)) in enumerate(zip(CASES, problems_)):
        done = policy.tokenizer.encode(committed, add_special_tokens=False) if committed else []
        single = dto_optimize(policy, reward, prompt, done, ahead, np.asarray(row_init[: len(ahead)]), CONFIG,
                              models=models)
        assert max_diff(single.variables, batch.variables[i]) <= 1e-5
        np.testing.assert_array_equal(single.token_ids, batch.token_ids[i, : len(ahead)])
        assert (single.full_steps, single.cached_steps) == (int(batch.full_steps[i]), int(batch.cached_steps[i]))
        assert single.model_calls == 4 * single.full_steps
        assert abs(single.loss - float(batch.loss[i])) <= 1e-5
    bad = np.asarray(problems_[1][1][: len(problems_[1][3])]).copy()
    bad[0, 3] = np.nan
    with pytest.raises(NonFiniteLossError, match="DTO problem 0: .* non-finite at step 0 of 6"):
        dto_optimize(policy, reward, CASES[1][0], [], problems_[1][3], bad, CONFIG, models=models)


def test_latents_without_reward(setup):
    """Paper-style "all" positions over final hidden states, likelihood only, at a small learning rate, through the
    vmapped single-problem step."""
    policy, reward, models, problems_ = setup
    config = DTOConfig(max_iters=6, learning_rate=1e-3, embedder="latents", update_positions="all")
    lm_only = make_models(models.lm_config, models.lm_params)
    problems = stack([p[0] for p in problems_])
    init = jnp.stack([rollout_init(policy, lm, ahead, "latents") for _, _, lm, ahead in problems_])
    _, cached = run(lm_only, config, problems, init, step_fn=vmapped_step)
    _, full = run(lm_only, config, problems, init, force_full=True, step_fn=vmapped_step)
    assert cached.variables.shape == (2, AHEAD, policy.config.hidden_size)
    assert max_diff(cached.variables, full.variables) <= 1e-6
    np.testing.assert_array_equal(cached.full_steps, [1, 1])  # no token changed at this rate: all later steps cached
    # vmap hides the batch from the step: the counter reports each row as a batch of one, although the select
    # computed the full-step branch for every row at every step
    np.testing.assert_array_equal(cached.executed_full_steps, [1, 1])
    np.testing.assert_array_equal(cached.reward, [0.0, 0.0])
    relaxed = np.asarray(cached.relaxed_trace)
    assert np.all(relaxed[:, 1:] < relaxed[:, :-1])
    logits = decoder.lm_logits(policy.config, policy.params, init)
    np.testing.assert_array_equal(cached.token_ids, jnp.argmax(logits, -1))
    # padding positions are parameterised in "all" mode but get no gradient, so they never move
    for i, (_, _, _, ahead) in enumerate(problems_):
        np.testing.assert_array_equal(cached.variables[i, len(ahead):], init[i, len(ahead):])
