"""The DTO loss and its gradient: the frozen-prefix cache is exact, the probes, vocabulary alignment end to end, and
(in float64) the straight-through identity (paper Eq. 25) and the prefix/postfix/reward split of dL/dy (Eqs. 4-6)."""

import functools
import string

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nabla_jax.char_tokenizer import build_char_tokenizer
from nabla_jax.dto import (
    DTOConfig,
    build_prefix_cache,
    dto_models,
    loss_and_onehot_grad,
    onehot_loss,
    selection_probes,
    token_confidence,
    straight_through_onehot,
)
from nabla_jax.dto.prefix_cache import lm_ahead_logprobs, rm_ahead_reward
from nabla_jax.rewards import Reward
from nabla_jax.models import decoder
from tests.support.dto_common import (
    FAST_COMPILE,
    build_problem,
    cases,
    encode,
    load_pair,
    _final_hidden,
    max_diff,
    padded,
    reference_loglik,
    reference_score,
)

CONFIG = DTOConfig()


@functools.partial(jax.jit, static_argnames="config", compiler_options=FAST_COMPILE)
def cached_and_full(models, config, problem, init):
    """Probes (prefix cache, one forward/backward) and the same loss/gradient from a full re-forward."""
    probes = selection_probes(models, config, problem, build_prefix_cache(models, problem, init.shape[0]), init)
    y = jax.nn.one_hot(jnp.argmax(init, axis=-1), init.shape[-1], dtype=jnp.float32)
    loss, parts, grad = loss_and_onehot_grad(models, config, problem, None, y)
    return probes, loss, parts, grad


@pytest.fixture(scope="module")
def setup(hf_checkpoint):
    policy, reward, models = load_pair(hf_checkpoint)
    return policy, reward, models, cases(policy, reward, models)


@functools.partial(jax.jit, static_argnames=("config", "size"), compiler_options=FAST_COMPILE)
def sized_probes(models, config, problem, init, size):
    return selection_probes(models, config, problem, build_prefix_cache(models, problem, init.shape[0]), init, size)


def test_prefix_cache_is_exact_and_probes(setup):
    policy, reward, models, problems = setup
    problem, init, lm, ahead = problems[0]
    probes, loss, parts, grad = cached_and_full(models, CONFIG, problem, init)
    n = len(ahead)
    scale = float(jnp.abs(grad).max())
    assert scale > 1e-3  # not trivially zero
    assert max_diff(probes.loss, loss) <= 1e-5
    # float32 roundoff differs between one forward over P+A slots and a prefix pass plus an A-slot pass; the
    # test models' large weights put dL/dy at O(1), so the bound is relative to its scale
    assert max_diff(probes.grad_y, grad) <= 1e-5 * scale
    assert float(jnp.abs(probes.grad_y[n:]).max()) == 0.0  # padding positions get no gradient

    # independent reference: the hard tokens through the loaders' own forward passes, no buffers or caches
    tokens = np.asarray(jnp.argmax(init[:n], axis=-1)).tolist()
    loglik = reference_loglik(policy, lm, tokens)
    rm_prefix = np.asarray(problem.rm_prefix_ids[: int(problem.rm_prefix_len)]).tolist()
    rm_postfix = np.asarray(problem.rm_postfix_ids[: int(problem.rm_postfix_len)]).tolist()
    score = reference_score(reward, rm_prefix + tokens + rm_postfix)
    assert abs(float(parts.loglik) - loglik) <= 1e-4 and abs(float(parts.reward) - score) <= 1e-5
    assert abs(float(probes.loss) - (-(1e-3 * loglik + score))) <= 1e-5

    logits = np.asarray(init[:n], np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    top_prob, entropy = token_confidence(init[:n])
    np.testing.assert_allclose(top_prob, p.max(-1), rtol=1e-5)
    np.testing.assert_allclose(entropy, -(p * np.log(p)).sum(-1), rtol=1e-4)
    np.testing.assert_allclose(probes.grad_norm[:n], jnp.linalg.norm(grad[:n], axis=-1), rtol=1e-5)
    assert float(jnp.abs(probes.grad_norm[n:]).max()) == 0.0

    # the pass over only the first n ahead slots (a cache cut to them) gives the same probes, padded back
    assert n < init.shape[0]
    narrow = sized_probes(models, CONFIG, problem, init, n)
    assert max_diff(narrow.loss, probes.loss) <= 1e-5 and max_diff(narrow.grad_y, probes.grad_y) <= 1e-5 * scale
    assert narrow.grad_y.shape == probes.grad_y.shape and float(jnp.abs(narrow.grad_norm[n:]).max()) == 0.0
    np.testing.assert_allclose(narrow.grad_norm[:n], probes.grad_norm[:n], rtol=1e-5)


def _shuffled_reward(reward):
    """The same reward model under a tokenizer with a different alphabet order (embedding rows moved to match)."""
    alphabet = string.printable[::-1].replace("\x0b", "").replace("\x0c", "").replace("\r", "")
    tokenizer = build_char_tokenizer(alphabet=alphabet)
    old, new = reward.tokenizer.get_vocab(), tokenizer.get_vocab()
    order = np.zeros(len(new), np.int32)
    for token, new_id in new.items():
        order[new_id] = old[token]
    params = dict(reward.params, embed={"embedding": reward.params["embed"]["embedding"][order]})
    return Reward(reward.config, params, tokenizer, "shuffled"), tokenizer


def test_reward_with_another_tokenizer_is_aligned_by_string(setup):
    policy, reward, models, problems = setup
    problem, init, lm, ahead = problems[0]
    shuffled, tokenizer = _shuffled_reward(reward)
    aligned = dto_models(policy, shuffled)
    assert not np.array_equal(np.asarray(aligned.reward_index), np.arange(policy.config.vocab_size))
    prompt, committed, ahead_text = "2+3?", "It", " is 5"
    other, _, _ = build_problem(policy, tokenizer, aligned, prompt, committed, ahead_text)
    assert not np.array_equal(np.asarray(other.rm_prefix_ids), np.asarray(problem.rm_prefix_ids))
    probes, _, parts, grad = cached_and_full(aligned, CONFIG, other, init)
    reference, _, ref_parts, _ = cached_and_full(models, CONFIG, problem, init)
    assert abs(float(parts.reward) - float(ref_parts.reward)) <= 1e-5
    assert max_diff(probes.grad_y, reference.grad_y) <= 1e-5 * float(jnp.abs(reference.grad_y).max())
    # and the reward tokenizer's own ids give the same score
    response = committed + policy.tokenizer.decode(np.asarray(jnp.argmax(init[: len(ahead)], axis=-1)))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
    )
    ids = encode(tokenizer, text)
    assert abs(reference_score(shuffled, ids) - float(parts.reward)) <= 1e-5


@functools.partial(jax.jit, static_argnames="config", compiler_options=FAST_COMPILE)
def identities(models, config, problem, z):
    """Two backward passes: (dL/dz, dL/dy) of the loss through the straight-through one-hot, and the three terms of
    dL/dy taken as separate arguments: F(y_w, y_in, y_r) = -(c * sum y_w . log p(.|y_in) + rc * r(y_r))."""
    cache = build_prefix_cache(models, problem, z.shape[0])
    real = (jnp.arange(z.shape[0]) < problem.ahead_len)[:, None]

    def loss(zz, shift):  # shift = 0 exposes dL/dy in the same pass
        return onehot_loss(models, config, problem, cache, straight_through_onehot(zz, config.tau) + shift)[0]

    grad_z, grad_y = jax.grad(loss, argnums=(0, 1))(z, jnp.zeros_like(z))

    def split(y_w, y_in, y_r):
        logp = lm_ahead_logprobs(models, problem, cache, y_in)
        nll = config.nll_coeff * jnp.sum(jnp.where(real, y_w * logp, 0.0))
        return -(nll + config.reward_coeff * rm_ahead_reward(models, problem, cache, y_r))

    y = straight_through_onehot(z, config.tau)
    prefix, postfix, reward = jax.grad(split, argnums=(0, 1, 2))(y, y, y)
    return grad_y, grad_z, prefix, postfix, reward


def test_gradient_identities_in_float64(setup):
    policy, reward, models, problems = setup
    problem, init, lm, ahead = problems[0]
    n = len(ahead)
    config = DTOConfig(update_positions="all", nll_coeff=0.5)  # a larger likelihood term so all three terms matter
    tokens = np.asarray(jnp.argmax(init[:n], axis=-1)).tolist()
    ids, _ = padded(lm + tokens)
    hidden = _final_hidden(policy.config, policy.params, ids)[len(lm) - 1 : len(lm) - 1 + n]
    reference = np.asarray(jax.nn.log_softmax(decoder.lm_logits(policy.config, policy.params, hidden), axis=-1))
    with jax.enable_x64(True):
        models64 = jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, models)
        z = jnp.asarray(np.asarray(init), jnp.float64)
        grad_y, grad_z, prefix, postfix, reward_term = identities(models64, config, problem, z)
        assert grad_y.dtype == jnp.float64
        x = jax.nn.softmax(z, axis=-1)
        eq25 = x * (grad_y - jnp.sum(x * grad_y, axis=-1, keepdims=True))
        assert max_diff(grad_z, eq25) <= 1e-12
        assert max_diff(prefix + postfix + reward_term, grad_y) <= 1e-6
        # the prefix term is -nll_coeff * log p(.|y_<l) of the hard sequence through a plain (float32) forward
        assert max_diff(prefix[:n], -0.5 * reference) <= 1e-5 * float(jnp.abs(reference).max())
        # the postfix (future-to-past) signal reaches every real position but the last, and no padding
        norms = jnp.linalg.norm(postfix, axis=-1)
        assert bool(jnp.all(norms[: n - 1] > 1e-6)) and float(norms[n - 1]) == 0.0
        assert float(jnp.abs(postfix[n:]).max() + jnp.abs(reward_term[n:]).max()) == 0.0
        assert float(jnp.linalg.norm(reward_term[:n], axis=-1).min()) > 1e-6
