"""Fidelity to the official runs: the repetition penalty's semantics, sampling defaults and EOS ids from a
checkpoint's generation_config.json, and the official scripts' presets."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

import nabla_jax
from nabla_jax.configs import published_config
from nabla_jax.generation import generate
from nabla_jax.generation.defaults import read_generation_config, with_generation_eos
from nabla_jax.generation.sampling import SamplingConfig, penalize_repetition, seen_tokens
from nabla_jax.presets import PRESETS
from nabla_jax.reasoner import NablaConfig, NablaReasoner

QWEN_GENERATION = os.path.join(os.path.dirname(nabla_jax.__file__), "configs", "generation", "qwen2.5-7b-instruct.json")


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    logits = jnp.asarray([2.0, -2.0, 3.0, -1.0, 0.5])
    seen = seen_tokens(jnp.asarray([1, 0, 4, 3, 3]), 3, 5)  # tokens 1, 0 and 4 are in the first 3 slots
    assert np.asarray(seen).tolist() == [True, True, False, False, True]
    out = np.asarray(penalize_repetition(logits, seen, 2.0))
    assert out.tolist() == [1.0, -4.0, 3.0, -1.0, 0.25]
    assert np.array_equal(np.asarray(penalize_repetition(logits, seen, 1.0)), np.asarray(logits))
    with pytest.raises(ValueError, match="repetition_penalty must be a number > 0"):
        SamplingConfig(1.0, 0, 1.0, 0.0)


def test_qwen25_instruct_ends_at_both_end_tokens_and_takes_its_sampling_defaults():
    config = published_config("qwen2.5-7b-instruct")
    generation = read_generation_config(QWEN_GENERATION)
    assert 151643 not in config.eos_token_ids  # config.json alone names only <|im_end|>
    assert with_generation_eos(config, generation).eos_token_ids == (151643, 151645)
    assert (generation.repetition_penalty, generation.top_k, generation.top_p, generation.temperature) == (1.05, 20, 0.8, 0.7)
    assert generation.pick("top_k", 5, 0) == 5 and generation.pick("top_k", None, 0) == 20


def test_a_checkpoints_generation_config_fills_what_the_user_leaves_unset(hf_checkpoint, tmp_path):
    source, _ = hf_checkpoint("llama")
    directory = str(tmp_path / "ckpt")
    shutil.copytree(source, directory)
    with open(os.path.join(directory, "generation_config.json"), "w") as handle:
        json.dump({"do_sample": False, "repetition_penalty": 1.5, "eos_token_id": [2, 7]}, handle)
    policy = nabla_jax.load_policy(directory)
    assert policy.config.eos_token_ids == (2, 7) and policy.generation.repetition_penalty == 1.5
    plain = nabla_jax.load_policy(source)
    prompts = ["12+7=?", "what is 3*4"]
    defaults = generate(policy, prompts, max_new_tokens=12)  # greedy with penalty 1.5, from the file
    explicit = generate(plain, prompts, max_new_tokens=12, temperature=0.0, repetition_penalty=1.5)
    unpenalised = generate(plain, prompts, max_new_tokens=12, temperature=0.0)
    for a, b, c in zip(defaults, explicit, unpenalised):
        cut = lambda ids: ids[: next((i + 1 for i, t in enumerate(ids) if t in (2, 7)), len(ids))]  # noqa: E731
        assert a.token_ids == cut(b.token_ids)
    assert any(b.token_ids != c.token_ids for b, c in zip(explicit, unpenalised))
    reasoner = NablaReasoner(policy, nabla_jax.load_reward(hf_checkpoint("llama_cls")[0]), NablaConfig(max_new_tokens=8))
    assert reasoner.config.rollout_repetition_penalty == 1.5 and reasoner.config.rollout_sampling.repetition_penalty == 1.5


def test_presets_set_the_official_scripts_values_and_flags_override_them():
    aime = NablaConfig.preset("official-aime")
    assert (aime.embedder, aime.grad_threshold, aime.max_new_tokens, aime.max_iters) == ("logits", 8.0, 3072, 20)
    amc = NablaConfig.preset("official-amc", max_iters=5)
    assert (amc.embedder, amc.rollout_temperature, amc.rollout_top_p, amc.resample_top_p, amc.max_iters) == ("latents", 0.7, 0.8, 0.8, 5)
    readme = NablaConfig.preset("official-readme")
    assert (readme.max_iters, readme.grad_threshold, readme.max_new_tokens) == (100, 8.0, 3072)
    assert NablaConfig.preset("official-math500") == NablaConfig()  # our defaults are the MATH-500 script's
    assert set(PRESETS) == {"official-math500", "official-aime", "official-amc", "official-readme"}
    with pytest.raises(ValueError, match="unknown preset"):
        NablaConfig.preset("official-gsm8k")


def test_eval_preset_resolution(hf_checkpoint):
    from nabla_jax.cli import build_parser
    from nabla_jax.commands.eval import decode_settings

    directory, _ = hf_checkpoint("llama")
    parse = lambda *extra: build_parser().parse_args(  # noqa: E731
        ["eval", "--benchmark", "gsm8k", "--method", "nabla", "--policy", directory, "--out", "x", *extra])
    settings, nabla = decode_settings(parse("--preset", "official-aime", "--top-p", "0.9"), None)
    assert (settings.max_new_tokens, settings.temperature, settings.top_p, settings.top_k) == (3072, 0.6, 0.9, 20)
    assert nabla["grad_threshold"] == 8.0 and "max_new_tokens" not in nabla
    settings, nabla = decode_settings(parse(), None)
    assert (settings.max_new_tokens, settings.repetition_penalty, nabla) == (1024, 1.0, {})
