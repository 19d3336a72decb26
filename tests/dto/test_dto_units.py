"""DTO pieces that need no model compilation: config, schedule, templates, vocabulary alignment, bad input, shapes."""

import math
import string

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nabla_jax.char_tokenizer import build_char_tokenizer
from nabla_jax.dto import (
    DTOConfig,
    align_vocab,
    dto_init,
    dto_optimize,
    make_models,
    make_problem,
    chat_prompt_ids,
    reward_template_ids,
)
from nabla_jax.dto.optimizer import lr_schedule
from nabla_jax.templates import reward_pad_id
from nabla_jax.models import decoder
from tests.support.dto_common import load_pair


def test_config_defaults_are_the_official_scripts():
    c = DTOConfig()
    assert (c.max_iters, c.learning_rate, c.min_lr_ratio, c.weight_decay) == (20, 0.01, 0.1, 0.0)
    assert (c.reward_coeff, c.nll_coeff, c.embedder, c.update_positions) == (1.0, 1e-3, "logits", "first")
    assert c.grad_caching and c.tau == 1.0 and not c.gumbel
    assert c.lam == pytest.approx(1000.0)
    hash(c)  # a static jit argument


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("embedder", "hidden", "embedder"),
        ("update_positions", "last", "update_positions"),
        ("max_iters", 0, "max_iters"),
        ("learning_rate", -1.0, "learning_rate"),
        ("learning_rate", math.nan, "learning_rate"),
        ("min_lr_ratio", 1.5, "min_lr_ratio"),
        ("tau", 0.0, "tau"),
        ("grad_caching", 1, "grad_caching"),
    ],
)
def test_config_rejects_bad_values(field, value, words):
    with pytest.raises(ValueError, match=words):
        DTOConfig(**{field: value})


def test_schedule_is_the_clipped_cosine():
    c = DTOConfig(max_iters=10, learning_rate=0.5, min_lr_ratio=0.2)
    got = np.asarray([lr_schedule(c)(jnp.asarray(t)) for t in range(11)])
    want = [0.5 * max(0.2, 0.5 * (1 + math.cos(math.pi * t / 10))) for t in range(11)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0] == pytest.approx(0.5) and got[-1] == pytest.approx(0.1)  # clipped at the floor, not rescaled


def test_reward_template_splits_around_the_response():
    tok = build_char_tokenizer()
    prefix, postfix = reward_template_ids(tok, "Hi")
    assert tok.decode(prefix) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(postfix) == "<|im_end|>\n"
    assert chat_prompt_ids(tok, "Hi") == prefix  # ChatML: generation prompt = reward prefix here
    tok.chat_template = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}"
    with pytest.raises(ValueError, match="does not place the assistant response"):
        reward_template_ids(tok, "Hi")


def test_vocab_alignment_by_token_string():
    policy_tok = build_char_tokenizer()
    alphabet = string.printable[::-1].replace("\x0b", "").replace("\x0c", "").replace("\r", "")
    shuffled = build_char_tokenizer(alphabet=alphabet)
    vocab = len(policy_tok)
    same = align_vocab(policy_tok, build_char_tokenizer(), vocab + 7, vocab, 0)
    assert same.identical and same.matched_fraction == 1.0
    np.testing.assert_array_equal(same.index[:vocab], np.arange(vocab))
    np.testing.assert_array_equal(same.index[vocab:], 0)  # embedding padding rows map to the reward pad id
    moved = align_vocab(policy_tok, shuffled, vocab, vocab, reward_pad_id(shuffled))
    assert not moved.identical and moved.matched_fraction == 1.0
    for token, policy_id in policy_tok.get_vocab().items():
        assert moved.index[policy_id] == shuffled.get_vocab()[token]


def test_vocab_alignment_refuses_small_overlap():
    policy_tok = build_char_tokenizer()
    greek = build_char_tokenizer(alphabet="αβγδεζηθικλμνξοπρστυφχψω")
    with pytest.raises(ValueError, match=r"share only 4 of 101 policy tokens \(4\.0% < min_overlap 90%\)"):
        align_vocab(policy_tok, greek, 101, len(greek), 0)
    assert align_vocab(policy_tok, greek, 101, len(greek), 0, min_overlap=0.0).matched_fraction < 0.05


def test_problem_rejects_empty_inputs():
    with pytest.raises(ValueError, match="ahead sequence is empty"):
        make_problem([1, 2], 0)
    with pytest.raises(ValueError, match="policy prefix is empty"):
        make_problem([], 3)
    with pytest.raises(ValueError, match="more than its buffer"):
        make_problem([1, 2, 3], 1, sizes=(2, 1, 0))


def _shape_models(dtype, vocab=1000, hidden=64):
    """Models as shape structs only (nothing allocated): enough for eval_shape of the DTO state."""
    base = dict(family="qwen2", vocab_size=vocab, hidden_size=hidden, intermediate_size=96, num_layers=2,
                num_heads=4, num_kv_heads=2, head_dim=16, qkv_bias=True)
    from nabla_jax.models.config import DecoderConfig

    lm = DecoderConfig(kind="causal_lm", **base)
    rm = DecoderConfig(kind="sequence_classification", **base)
    return jax.eval_shape(
        lambda: make_models(lm, decoder.init_params(lm, jax.random.key(0), dtype), rm,
                            decoder.init_params(rm, jax.random.key(1), dtype))
    )


@pytest.mark.parametrize("embedder", ["logits", "latents"])
def test_state_is_float32_and_only_moving_positions_are_parameterised(embedder):
    models = _shape_models(jnp.bfloat16)
    problem = make_problem([1, 2, 3], 5, [1], [2])
    width = 1000 if embedder == "logits" else 64
    init = jax.ShapeDtypeStruct((16, width), jnp.bfloat16)
    sizes = {}
    for positions in ("first", "all"):
        config = DTOConfig(embedder=embedder, update_positions=positions)
        state = jax.eval_shape(lambda x: dto_init(models, config, problem, x), init)
        moving = 1 if positions == "first" else 16
        assert state.variables.shape == (moving, width) and state.variables.dtype == jnp.float32
        assert state.grad_y.shape == (moving, 1000)
        leaves = jax.tree_util.tree_leaves(state.opt_state)
        assert all(leaf.dtype == jnp.float32 for leaf in leaves if leaf.ndim == 2)
        sizes[positions] = sum(leaf.size for leaf in leaves if leaf.ndim == 2)
    assert sizes["all"] == 16 * sizes["first"]


def test_init_shape_must_match_the_embedder():
    models = _shape_models(jnp.float32)
    problem = make_problem([1, 2, 3], 5, [1], [2])
    with pytest.raises(ValueError, match=r"shape \[ahead_len >= 1, 64\] \(embedder='latents'"):
        jax.eval_shape(lambda x: dto_init(models, DTOConfig(embedder="latents"), problem, x),
                       jax.ShapeDtypeStruct((5, 1000), jnp.float32))


def test_entry_point_rejects_bad_input_before_running(hf_checkpoint):
    policy, reward, models = load_pair(hf_checkpoint)
    good = np.zeros((3, policy.config.vocab_size), np.float32)
    run = lambda **kw: dto_optimize(policy, reward, **{"prompt": "Hi", "committed_ids": [], "ahead_ids": [5, 6, 7],
                                                       "init": good, "models": models, **kw})
    with pytest.raises(ValueError, match="DTO problem 0: the ahead sequence is empty"):
        run(ahead_ids=[], init=good[:0])
    with pytest.raises(ValueError, match=r"DTO problem 0: init must have shape \[ahead_len >= 1, 101\]"):
        run(init=np.zeros((3, 64), np.float32))
    with pytest.raises(ValueError, match="init has 2 positions but ahead_ids has 3"):
        run(init=good[:2])
    with pytest.raises(ValueError, match="committed_ids has ids outside"):
        run(committed_ids=[500])
    with pytest.raises(ValueError, match="batch sizes differ"):
        dto_optimize(policy, reward, ["Hi", "Yo"], [[]], [[5], [6]], [good[:1], good[:1]], models=models)
    with pytest.raises(ValueError, match="embedder"):
        run(config=DTOConfig(embedder="onehot"))
    with pytest.raises(ValueError, match="update_positions"):
        run(config=DTOConfig(update_positions="middle"))


@pytest.mark.parametrize(
    "changes", [{"grad_caching": False}, {"gumbel": True}, {"embedder": "latents", "update_positions": "all"}]
)
def test_other_static_paths_trace(changes):
    """Every static branch of the step traces with consistent shapes (values are checked in test_dto_loop)."""
    from nabla_jax.dto import build_prefix_cache, dto_step, stack

    models = _shape_models(jnp.bfloat16)
    config = DTOConfig(**changes)
    problems = stack([make_problem([1, 2, 3], 5, [1], [2])] * 2)
    width = 1000 if config.embedder == "logits" else 64
    init = jax.ShapeDtypeStruct((2, 8, width), jnp.float32)

    def run(models, problems, init):
        caches = jax.vmap(lambda p: build_prefix_cache(models, p, 8))(problems)
        state = jax.vmap(lambda p, x: dto_init(models, config, p, x))(problems, init)
        return dto_step(models, config, problems, caches, state), state

    after, before = jax.eval_shape(run, models, problems, init)
    assert jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype), after, before) == jax.tree.map(
        lambda _: True, before
    )
    assert after.grad_y.shape[1] == (0 if not config.grad_caching else after.variables.shape[1])
