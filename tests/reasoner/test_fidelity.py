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
from nabla_jax.models.generation_config import read_generation_config, with_generation_eos
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
    with pytest.raises(ValueError, match="repetition_penalty must be a finite number > 0"):
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
    assert reasoner.config.rollout.repetition_penalty == 1.5


def test_presets_set_the_official_scripts_values_and_flags_override_them():
    aime = NablaConfig.preset("official-aime")
    assert (aime.dto.embedder, aime.grad_threshold, aime.max_new_tokens, aime.dto.max_iters) == ("logits", 8.0, 3072, 20)
    amc = NablaConfig.preset("official-amc", max_iters=5)
    assert (amc.dto.embedder, amc.rollout.temperature, amc.rollout.top_p, amc.resample.top_p, amc.dto.max_iters) == (
        "latents", 0.7, 0.8, 0.8, 5)
    readme = NablaConfig.preset("official-readme")
    assert (readme.dto.max_iters, readme.grad_threshold, readme.max_new_tokens) == (100, 8.0, 3072)
    assert NablaConfig.preset("official-math500") == NablaConfig()  # our defaults are the MATH-500 script's
    assert set(PRESETS) == {"official-math500", "official-aime", "official-amc", "official-readme"}
    with pytest.raises(ValueError, match="unknown preset"):
        NablaConfig.preset("official-gsm8k")


def test_eval_preset_resolution(hf_checkpoint):
    from nabla_jax.cli import build_parser
    from nabla_jax.commands.eval import eval_config
    from nabla_jax.evaluation.context import DecodeSettings
    from nabla_jax.evaluation.nabla_methods import SET_BY_EVAL

    directory, _ = hf_checkpoint("llama")
    parse = lambda *extra: build_parser().parse_args(  # noqa: E731
        ["eval", "--benchmark", "gsm8k", "--method", "nabla", "--policy", directory, "--out", "x", *extra])
    config = eval_config(parse("--preset", "official-aime", "--top-p", "0.9"))
    settings = DecodeSettings.of(config)
    assert (settings.max_new_tokens, settings.temperature, settings.top_p, settings.top_k) == (3072, 0.6, 0.9, 20)
    assert config.grad_threshold == 8.0
    config = eval_config(parse())
    settings = DecodeSettings.of(config)
    nabla = {k: v for k, v in config.changed_settings().items() if k not in SET_BY_EVAL}
    assert (settings.max_new_tokens, settings.repetition_penalty, nabla) == (1024, 1.0, {})


def torch_bf16_adam_trajectory(start, grads, lr, max_iters, min_lr_ratio):
    """The official optimiser on a bfloat16 variable: torch.optim.Adam with the clipped-cosine LambdaLR."""
    import math

    import torch

    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.bfloat16))
    opt = torch.optim.Adam([param], lr=lr, foreach=False)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: max(min_lr_ratio, 0.5 * (1 + math.cos(math.pi * t / max_iters))))
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.bfloat16)
        opt.step()
        schedule.step()
    return param.detach().float().numpy()


def run_optimizer(config, start, grads):
    import optax

    from nabla_jax.dto.optimizer import make_optimizer

    opt = make_optimizer(config)
    params = jnp.asarray(start, jnp.bfloat16 if config.dto_dtype == "bfloat16" else jnp.float32)
    state = opt.init(params)
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("gradients", ["random", "steady"])
def test_bfloat16_dto_optimiser_rounds_as_torch_adam_on_bfloat16(gradients):
    from nabla_jax.dto import DTOConfig

    config = DTOConfig(dto_dtype="bfloat16")
    rng = np.random.default_rng(0)
    start = np.concatenate([rng.normal(0, 3, 60), [4.0, -4.0, 6.5, 0.3, -0.02]]).astype(np.float32)
    if gradients == "random":
        grads = rng.normal(0, 1, (config.max_iters, start.size)).astype(np.float32)
    else:  # one sign per coordinate, as a DTO gradient that keeps pulling the same way
        grads = (np.sign(rng.normal(size=start.size)) * rng.uniform(0.5, 1.5, (config.max_iters, start.size))).astype(np.float32)
    params, state = run_optimizer(config, start, grads)
    assert params.dtype == jnp.bfloat16 and state.mu.dtype == jnp.bfloat16 and state.nu.dtype == jnp.bfloat16
    ref = torch_bf16_adam_trajectory(start, grads, config.learning_rate, config.max_iters, config.min_lr_ratio)
    ours = np.asarray(params, np.float32)
    assert np.array_equal(ours, ref)  # bit for bit
    if gradients == "steady":
        start_bf16 = np.asarray(jnp.asarray(start, jnp.bfloat16), np.float32)
        large, small = np.abs(start_bf16) > 4, np.abs(start_bf16) < 1  # (at exactly 4 a step down fits)
        assert large.sum() >= 5 and np.array_equal(ours[large], start_bf16[large])  # logits above 4 never move
        assert np.any(ours[small] != start_bf16[small])  # small ones do
        p32, _ = run_optimizer(DTOConfig(), start, grads)
        moved = np.abs(np.asarray(p32) - start)
        assert np.all(moved[large] > 0.05) and moved.max() <= 0.11  # float32 moves every logit by up to ~0.107


def test_bfloat16_dto_end_to_end_keeps_large_logits_where_float32_moves_them(hf_checkpoint):
    """dto_optimize with dto_dtype bfloat16: variables stay bfloat16, and a first-position logit of magnitude above
    4 ends where it started, while the float32 run moves it."""
    from nabla_jax.dto import DTOConfig, dto_optimize
    from tests.support.dto_common import CASES, build_problem, load_pair, rollout_init

    policy, reward, models = load_pair(hf_checkpoint)
    prompt, committed, ahead_text = CASES[0]
    _, lm, ahead = build_problem(policy, reward.tokenizer, models, prompt, committed, ahead_text)
    init = np.asarray(rollout_init(policy, lm, ahead))[: len(ahead)]
    done = policy.tokenizer.encode(committed, add_special_tokens=False)
    runs = {dtype: dto_optimize(policy, reward, prompt, done, ahead, init, DTOConfig(max_iters=8, dto_dtype=dtype),
                                models=models) for dtype in ("bfloat16", "float32")}
    start = np.asarray(jnp.asarray(init[0], jnp.bfloat16), np.float32)
    large = np.abs(start) > 4
    assert runs["bfloat16"].variables.dtype == jnp.bfloat16 and large.sum() >= 1
    bf16 = np.asarray(runs["bfloat16"].variables[0], np.float32)
    assert np.array_equal(bf16[large], start[large])
    assert np.all(np.abs(runs["float32"].variables[0][large] - init[0][large]) > 0)


def test_official_budget_check_runs_one_iteration_at_one_generation(hf_checkpoint):
    """``budget_check="after"`` (the official loop): at max_n_generations=1 one DTO run and one proposal still
    happen, equal to the eager reference. (``"before"``, ours and the default, stops at the first rollout: the
    budget tests of test_nabla.py.)"""
    from tests.reasoner.test_nabla import PROMPTS, SMALL, assert_matches_reference

    policy = nabla_jax.load_policy(hf_checkpoint("llama")[0])
    reward = nabla_jax.load_reward(hf_checkpoint("llama_cls")[0])
    prompts = PROMPTS[:2]
    config = NablaConfig.from_settings(**{**SMALL, "grad_threshold": None, "confidence_threshold": None, "max_n_generations": 1,
                            "budget_check": "after"})
    reasoner = NablaReasoner(policy, reward, config)
    batched = reasoner.generate(prompts, seed=3, batch_size=2)
    total = assert_matches_reference(reasoner, batched, prompts=prompts)
    assert all(r.stats["iterations"] == 2 for r in batched)  # one iteration, then the budget
    assert total["dto_runs"] == len(prompts) and total["proposals"] >= 1
    with pytest.raises(ValueError, match="budget_check"):
        NablaConfig(budget_check="never")
