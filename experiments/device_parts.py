"""The workloads of ``experiments/device_check.py``: one function per part, each appending rows as it goes.

A part is ``part(ctx, budget, rows)``. It asks ``budget.next_case()`` before each case and records a "skipped
(budget)" row instead of starting one that would not fit; its exceptions are caught by the runner, and the rows it appended
before failing are kept. Models have random weights: speed and memory do not depend on the values, and parity
compares two implementations of the same weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.models import decoder
from nabla_jax.models.config import DecoderConfig, config_from_dict, config_to_dict
from nabla_jax.models.flops import decode_flops, dto_step_flops

GiB = float(1 << 30)
_QWEN = dict(rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True, pad_token_id=0, vocab_size=151936)
# architecture shapes (HF config.json fields); weights are random, so only the shapes matter
SHAPES = {
    "qwen2.5-0.5b": dict(_QWEN, model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768),
    "qwen2.5-1.5b": dict(_QWEN, model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768),
    "qwen3-0.6b": dict(_QWEN, model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960),
    "toy-qwen2": dict(model_type="qwen2", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, pad_token_id=0),
    "toy-qwen3": dict(model_type="qwen3", vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                      tie_word_embeddings=True, pad_token_id=0),
}
PUBLISHED = {"qwen2.5-7b": "qwen2.5-7b-instruct", "qwen3-8b-reward": "skywork-reward-v2-qwen3-8b"}
ARCHITECTURES = {("qwen2", False): "Qwen2ForCausalLM", ("qwen3", False): "Qwen3ForCausalLM",
                 ("qwen2", True): "Qwen2ForSequenceClassification", ("qwen3", True): "Qwen3ForSequenceClassification"}


def decoder_config(name: str, reward: bool = False) -> DecoderConfig:
    """The config of shape ``name`` as a causal LM, or (``reward``) as a one-label sequence classifier."""
    if name in PUBLISHED:
        from nabla_jax.configs import published_config

        config = published_config(PUBLISHED[name])
        if config.is_reward_model != reward:
            raise ValueError(f"shape {name} is {'a reward model' if config.is_reward_model else 'a policy'}")
        return config
    raw = dict(SHAPES[name])
    raw["architectures"] = [ARCHITECTURES[(raw["model_type"], reward)]]
    if reward:
        raw["num_labels"] = 1
    return config_from_dict(raw, where=name)


@dataclasses.dataclass
class Context:
    """What the parts share: settings, device facts, random models built once, and the records the summary parts
    (memory, compile) read."""

    sizes: object
    peak_tflops: float | None
    memory_limit: int | None
    models: dict = dataclasses.field(default_factory=dict)
    compiles: list = dataclasses.field(default_factory=list)  # (part, case, seconds)
    peaks: list = dataclasses.field(default_factory=list)  # dicts for the memory part

    def random_model(self, name: str, reward: bool = False, dtype=jnp.bfloat16):
        """``(config, params)`` with random weights, built on the default device once per (shape, kind, dtype)."""
        key = (name, reward, jnp.dtype(dtype).name)
        if key not in self.models:
            config = decoder_config(name, reward)
            init = jax.jit(decoder.init_params, static_argnums=(0, 2))
            params = jax.block_until_ready(init(config, jax.random.key(len(self.models)), dtype))
            self.models[key] = (config, params)
        return self.models[key]

    def mfu(self, flops: float, seconds: float) -> float | None:
        return flops / seconds / (self.peak_tflops * 1e12) if self.peak_tflops and seconds > 0 else None


def row(part, case, metric, value, unit="", reference=None, ratio=None, note="") -> dict:
    return dict(part=part, case=case, metric=metric, value=value, unit=unit, reference=reference, ratio=ratio,
                note=note)


def skipped(part, case, why="budget") -> dict:
    return row(part, case, "skipped", None, note=f"skipped ({why})")


def memory_stats() -> dict | None:
    """The default device's allocator statistics (None where the backend keeps none, e.g. the CPU)."""
    try:
        return jax.devices()[0].memory_stats() or None
    except Exception:  # noqa: BLE001 - a backend without the call
        return None


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def random_ids(rng: np.random.Generator, vocab: int, *shape) -> np.ndarray:
    """Token ids in [1, vocab): id 0 is every shape's pad id, so no real token is taken for padding."""
    return rng.integers(1, vocab, size=shape, dtype=np.int64)


# --- parity ------------------------------------------------------------------------------------------------------


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def torch_free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def torch_model(config: DecoderConfig, seed: int, init_range: float = 0.02):
    """A transformers model of ``config``'s shape with random weights, on the torch device, float32."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    raw = config_to_dict(config)
    hf_config = transformers.AutoConfig.for_model(raw.pop("model_type"), **raw, initializer_range=init_range)
    torch.manual_seed(seed)
    with torch.device(torch_device()):
        model = getattr(transformers, config.architecture)(hf_config)
    return model.eval()


def torch_outputs(model, ids: np.ndarray, reward: bool) -> np.ndarray:
    """Logits ``[B, T, V]`` (policy) or scores ``[B]`` (reward), as float32 numpy."""
    import torch

    with torch.no_grad():
        tensor = torch.as_tensor(ids, device=torch_device())
        out = model(input_ids=tensor, attention_mask=torch.ones_like(tensor)).logits.float()
    out = out[:, 0] if reward else out
    return out.cpu().numpy()


def load_ours(path: str, reward: bool):
    """``(model, how)``: through ``load_policy`` / ``load_reward``; where the ``gguf`` package is missing (the
    loader imports it for GGUF files), through the safetensors reader underneath them, ``convert.hf``."""
    from nabla_jax.loading import Policy, load_policy
    from nabla_jax.rewards import Reward, load_reward

    try:
        return (load_reward if reward else load_policy)(path), ("load_reward" if reward else "load_policy")
    except ModuleNotFoundError as err:
        if err.name != "gguf":
            raise
    from convert.hf import load_hf_params

    config, params = load_hf_params(path)
    return (Reward if reward else Policy)(config, params, None, path), "convert.hf (no gguf package here)"


def ours_outputs(path: str, ids: np.ndarray, reward: bool, precision: str | None = None):
    """``(outputs, how it was loaded)`` through our loader and jitted forward; ``precision`` sets JAX's default
    matmul precision."""
    model, how = load_ours(path, reward)
    with matmul_precision(precision):
        out = model.score(ids) if reward else model.logits(ids)
    return np.asarray(jax.device_get(out), np.float32), how


def matmul_precision(precision: str | None):
    """JAX's default matmul precision for the block (None: leave it as it is)."""
    manager = getattr(jax, "default_matmul_precision", None)
    return manager(precision) if precision and manager is not None else contextlib.nullcontext()


def parity_case(part, name: str, reward: bool, ids: np.ndarray, tmp: str) -> list[dict]:
    """float32 (highest and default matmul precision) and a bfloat16 checkpoint against torch on its device."""
    import torch

    config = decoder_config(name, reward)
    model = torch_model(config, seed=0, init_range=0.1)  # logits of several units, so errors are visible
    what, metric = ("reward " if reward else "policy ") + name, "max abs diff, " + ("scores" if reward else "logits")
    f32_dir, bf16_dir = os.path.join(tmp, name + "-f32"), os.path.join(tmp, name + "-bf16")
    model.save_pretrained(f32_dir)
    reference = torch_outputs(model, ids, reward)
    scale = float(np.max(np.abs(reference)))
    rows = []
    for precision, label in (("highest", "float32, matmul precision highest"), (None, "float32, default precision")):
        ours, how = ours_outputs(f32_dir, ids, reward, precision)
        rows.append(row(part, f"{what}, {label}", metric, float(np.max(np.abs(ours - reference))), reference=scale,
                        note=f"reference: largest abs torch output (on {torch_device()}); loaded by {how}"))
    model.to(torch.bfloat16).save_pretrained(bf16_dir)
    torch_bf16 = torch_outputs(model, ids, reward)
    ours_bf16, how = ours_outputs(bf16_dir, ids, reward)
    diff = float(np.max(np.abs(ours_bf16 - torch_bf16)))
    ours_err, torch_err = (float(np.max(np.abs(x - reference))) for x in (ours_bf16, torch_bf16))
    rows.append(row(part, f"{what}, bfloat16 checkpoint", metric, diff, reference=scale,
                    note=f"against float32 torch: ours {ours_err:.3g}, torch bf16 {torch_err:.3g}; loaded by {how}"))
    del model
    torch_free()
    return rows


def part_parity(ctx: Context, budget, rows: list) -> None:
    s = ctx.sizes
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        for name, reward in ((s.parity_policy, False), (s.parity_reward, True)):
            case = ("reward " if reward else "policy ") + name
            if not budget.next_case():
                rows.append(skipped("parity", case))
                continue
            ids = random_ids(rng, decoder_config(name, reward).vocab_size, *s.parity_tokens)
            rows.extend(parity_case("parity", name, reward, ids, tmp))


# --- generation --------------------------------------------------------------------------------------------------


def transformers_rate(model, prompts: np.ndarray, new_tokens: int) -> float:
    """Greedy ``generate`` tokens per second (no EOS: every row generates ``new_tokens``), warm."""
    import torch

    ids = torch.as_tensor(prompts, device=torch_device())
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, **kwargs)  # warm-up
        torch_sync()
        out, seconds = timed(lambda: model.generate(ids, max_new_tokens=new_tokens, **kwargs))
        torch_sync()
    return (out.shape[1] - ids.shape[1]) * out.shape[0] / seconds


def ours_rate(policy, prompts: np.ndarray, new_tokens: int) -> tuple[float, float]:
    """(tokens per second warm, seconds of compilation) of :func:`nabla_jax.generate`, greedy."""
    from nabla_jax.generation import generate

    kwargs = dict(max_new_tokens=new_tokens, temperature=0.0, batch_size=len(prompts))
    _, first = timed(lambda: generate(policy, [list(p) for p in prompts], **kwargs))
    results, seconds = timed(lambda: generate(policy, [list(p) for p in prompts], **kwargs))
    return sum(len(r.token_ids) for r in results) / seconds, max(first - seconds, 0.0)


def reference_generator(config: DecoderConfig):
    """transformers' model of ``config``'s shape in bf16, or None when torch would run on a CPU beside an
    accelerator (a 1.5B CPU generate would spend the whole budget)."""
    import torch

    if torch_device() == "cpu" and jax.default_backend() != "cpu":
        return None
    model = torch_model(config, seed=0).to(torch.bfloat16)
    model.generation_config.eos_token_id = None  # no EOS: every row runs to the budget, as ours
    return model


def part_generation(ctx: Context, budget, rows: list) -> None:
    from nabla_jax.loading import Policy

    s = ctx.sizes
    config, params = ctx.random_model(s.gen_shape)
    policy = Policy(config, params, None, "random " + s.gen_shape)  # no EOS in the config
    model = reference_generator(config)
    rng = np.random.default_rng(1)
    for batch in s.gen_batches:
        case = f"{s.gen_shape} bf16, batch {batch}, prompt {s.gen_prompt}, {s.gen_new_tokens} new tokens"
        if not budget.next_case():
            rows.append(skipped("generation", case))
            continue
        prompts = random_ids(rng, config.vocab_size, batch, s.gen_prompt)
        ours, compile_s = ours_rate(policy, prompts, s.gen_new_tokens)
        reference = None if model is None else transformers_rate(model, prompts, s.gen_new_tokens)
        ctx.compiles.append(("generation", f"generate, batch {batch}", compile_s))
        mfu = ctx.mfu(batch * decode_flops(config, s.gen_prompt, s.gen_new_tokens), batch * s.gen_new_tokens / ours)
        where = "transformers generate" if model is not None else "none (torch has no CUDA here)"
        rows.append(row("generation", case, "tokens/s", ours, "tok/s", reference,
                        None if reference is None else ours / reference, f"reference: {where}; MFU {fmt_pct(mfu)}"))
    del model
    torch_free()


# --- DTO ---------------------------------------------------------------------------------------------------------


def fmt_pct(x: float | None) -> str:
    return "n/a (no peak for this device)" if x is None else f"{100 * x:.1f}%"


def dto_models_for(ctx: Context, policy_name: str, reward_name: str):
    from nabla_jax.dto import make_models

    lm_cfg, lm_params = ctx.random_model(policy_name)
    rm_cfg, rm_params = ctx.random_model(reward_name, reward=True)
    index = None if rm_cfg.vocab_size >= lm_cfg.vocab_size else np.arange(lm_cfg.vocab_size) % rm_cfg.vocab_size
    return make_models(lm_cfg, lm_params, rm_cfg, rm_params, reward_index=index)


def fits(ctx: Context, plan_total: int) -> bool:
    return ctx.memory_limit is None or plan_total <= 0.9 * ctx.memory_limit


def dto_case(ctx: Context, policy_name: str, reward_name: str, rows: list) -> None:
    from nabla_jax.dto import DTOConfig, build_prefix_cache, dto_init, dto_step, make_problem, stack

    s, config, postfix = ctx.sizes, DTOConfig(), 2
    case = f"{policy_name} + {reward_name} bf16, prompt {s.dto_prompt}, ahead {s.dto_ahead}, batch 1"
    models = dto_models_for(ctx, policy_name, reward_name)
    rng = np.random.default_rng(2)
    ids = random_ids(rng, models.rm_config.vocab_size, s.dto_prompt).tolist()
    problems = stack([make_problem(ids, s.dto_ahead, ids, [1] * postfix, (s.dto_prompt, s.dto_prompt, 8))])
    init = jnp.asarray(rng.standard_normal((1, s.dto_ahead, models.vocab_size)), jnp.float32)
    state = jax.vmap(lambda q, x: dto_init(models, config, q, x))(problems, init)
    prepare = jax.jit(lambda m, p: jax.vmap(lambda q: build_prefix_cache(m, q, s.dto_ahead))(p))
    caches = jax.block_until_ready(prepare(models, problems))
    before = memory_stats()
    step, compile_s = timed(lambda: jax.jit(dto_step, static_argnums=1).lower(
        models, config, problems, caches, state).compile())
    ctx.compiles.append(("dto", f"dto_step, {policy_name}", compile_s))
    at_compile = memory_stats()
    out = jax.block_until_ready(step(models, problems, caches, state))  # from the initial state: a full step
    times = [timed(lambda: jax.block_until_ready(step(models, problems, caches, state)))[1]
             for _ in range(s.dto_repeats)]
    seconds = float(np.median(times))
    flops = dto_step_flops(models.lm_config, models.rm_config, s.dto_prompt, s.dto_ahead, s.dto_prompt, postfix)
    full = int(out.executed_full_steps[0])
    rows.append(row("dto", case, "time per full step", seconds * 1e3, "ms",
                    note=f"{flops:.3g} FLOP/step, {flops / seconds / 1e12:.3g} TFLOP/s; full steps run: {full}"))
    rows.append(row("dto", case, "MFU", ctx.mfu(flops, seconds), "fraction",
                    note="our FLOP counter (backward = 2 x forward) against the chip's bf16 peak, "
                    + (f"{ctx.peak_tflops:g} TFLOP/s" if ctx.peak_tflops else "unknown here")))
    ctx.peaks.append(dict(case=f"dto {policy_name}", before=before, at_compile=at_compile, after=memory_stats(),
                          policy=models.lm_config, reward=models.rm_config, batch=1,
                          max_len=s.dto_prompt + s.dto_ahead, ahead=s.dto_ahead, dto=config,
                          compiled=compiled_bytes(step)))


def part_dto(ctx: Context, budget, rows: list) -> None:
    from nabla_jax.plan import format_bytes, memory_plan

    s = ctx.sizes
    for policy_name, reward_name in s.dto_pairs:
        case = f"{policy_name} + {reward_name}"
        if not budget.next_case():
            rows.append(skipped("dto", case))
            continue
        plan = memory_plan(decoder_config(policy_name), decoder_config(reward_name, True), "data=1", 1,
                           s.dto_prompt + s.dto_ahead, s.dto_ahead)
        if not fits(ctx, plan.total_device_bytes):
            rows.append(skipped("dto", case, f"memory: plan {format_bytes(plan.total_device_bytes)}"))
            continue
        dto_case(ctx, policy_name, reward_name, rows)


def compiled_bytes(compiled) -> int | None:
    """XLA's own footprint of a compiled program: arguments + outputs + temporaries - aliased buffers."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - a backend without the analysis
        return None


# --- the ∇-Reasoner ----------------------------------------------------------------------------------------------


def nabla_setup(ctx: Context):
    """(models, NablaConfig, RolloutSpec) of the speed run: no EOS, no gradient-norm test, so every problem does
    the full work its budget allows."""
    from nabla_jax.generation.rollouts import RolloutSpec
    from nabla_jax.reasoner import NablaConfig

    s = ctx.sizes
    models = dto_models_for(ctx, *s.nabla_pair)
    cfg = NablaConfig.from_settings(max_new_tokens=s.nabla_new_tokens, max_n_generations=s.nabla_generations,
                                    max_iters=s.nabla_iters, grad_threshold=None, rollout_repetition_penalty=1.0)
    return models, cfg, RolloutSpec(cfg.max_new_tokens, cfg.rollout, (), (), 0)


def nabla_batch(ctx: Context, models, cfg, batch: int):
    from nabla_jax.generation.buckets import bucket_length, round_up
    from nabla_jax.reasoner.problem import make_nabla_problem

    s, rng = ctx.sizes, np.random.default_rng(3)
    sizes = (bucket_length(s.nabla_prompt) + cfg.max_new_tokens, round_up(16, 32), round_up(2, 8))
    problems = [make_nabla_problem(random_ids(rng, models.rm_config.vocab_size, s.nabla_prompt), random_ids(rng, 100, 16),
                             [1, 2], sizes, jax.random.fold_in(jax.random.key(0), i)) for i in range(batch)]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *problems), sizes[0]


def nabla_case(ctx: Context, models, cfg, spec, batch: int, rows: list) -> None:
    from nabla_jax.reasoner.loop import decode_batch

    s = ctx.sizes
    case = (f"{' + '.join(s.nabla_pair)} bf16, batch {batch}, prompt {s.nabla_prompt}, {cfg.max_new_tokens} new "
            f"tokens, {cfg.max_n_generations} rollouts, {cfg.dto.max_iters} DTO iterations")
    problems, length = nabla_batch(ctx, models, cfg, batch)
    before = memory_stats()
    compiled, compile_s = timed(lambda: decode_batch.lower(models, cfg, spec, 0, problems, True).compile())
    ctx.compiles.append(("nabla", f"decode_batch, batch {batch}", compile_s))
    at_compile = memory_stats()
    state, seconds = timed(lambda: jax.block_until_ready(compiled(models, problems)))
    stats = jax.device_get(state.stats)
    flops = float(np.sum(stats.flops))
    note = (f"per problem: {np.mean(stats.rollouts):.1f} rollouts, {np.mean(stats.dto_full_steps):.1f} full DTO "
            f"steps, {np.mean(stats.generated_tokens):.0f} generated tokens")
    rows.append(row("nabla", case, "problems/s", batch / seconds, "problems/s", note=note))
    rows.append(row("nabla", case, "MFU", ctx.mfu(flops, seconds), "fraction",
                    note=f"{flops / seconds / 1e12:.3g} TFLOP/s from the decoder's own FLOP count"))
    ctx.peaks.append(dict(case=f"nabla batch {batch}", before=before, at_compile=at_compile, after=memory_stats(),
                          policy=models.lm_config, reward=models.rm_config, batch=batch, max_len=length,
                          ahead=cfg.max_new_tokens, dto=cfg.dto, compiled=compiled_bytes(compiled)))


def part_nabla(ctx: Context, budget, rows: list) -> None:
    models, cfg, spec = nabla_setup(ctx)
    for batch in ctx.sizes.nabla_batches:
        if not budget.next_case():
            rows.append(skipped("nabla", f"batch {batch}"))
            continue
        nabla_case(ctx, models, cfg, spec, batch, rows)


# --- summaries: memory and compile times -------------------------------------------------------------------------


def peak_note(before: dict | None, at_compile: dict | None, after: dict) -> str:
    """Whose peak a process-wide high-water mark is: this run's, its compilation's, or an earlier run's."""
    peak = after["peak_bytes_in_use"]
    if before is not None and peak <= before.get("peak_bytes_in_use", 0):
        return "an earlier run peaked higher: not this run's own"
    if at_compile is not None and peak <= at_compile.get("peak_bytes_in_use", 0):
        return "set while compiling (autotuning buffers), not by the run"
    return "the process peak, set by this run"


def memory_rows(ctx: Context, record: dict) -> list[dict]:
    from nabla_jax.plan import memory_plan

    plan = memory_plan(record["policy"], record["reward"], "data=1", record["batch"], record["max_len"],
                       record["ahead"], dto=record["dto"]).total_device_bytes / GiB
    case, out, after = record["case"], [], record["after"]
    if after is not None and "peak_bytes_in_use" in after:
        peak = after["peak_bytes_in_use"] / GiB
        out.append(row("memory", case, "peak device memory", peak, "GiB", plan, peak / plan,
                       "reference: nabla-jax plan; " + peak_note(record["before"], record["at_compile"], after)))
    if record["compiled"] is not None:
        footprint = record["compiled"] / GiB
        out.append(row("memory", case, "XLA footprint of the program", footprint, "GiB", plan, footprint / plan,
                       "arguments + outputs + temporaries (compiled memory analysis); reference: nabla-jax plan"))
    return out


def part_memory(ctx: Context, budget, rows: list) -> None:
    for record in ctx.peaks:
        rows.extend(memory_rows(ctx, record))
    if not ctx.peaks:
        rows.append(skipped("memory", "no run recorded", "the DTO and nabla parts did not run"))


def part_compile(ctx: Context, budget, rows: list) -> None:
    for part, case, seconds in ctx.compiles:
        rows.append(row("compile", f"{part}: {case}", "compile time", seconds, "s"))
    if ctx.compiles:
        total = math.fsum(seconds for _, _, seconds in ctx.compiles)
        rows.append(row("compile", "all programs above", "compile time", total, "s"))
