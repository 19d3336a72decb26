"""Throughput against batch size, measured side by side in one run (the machine is shared: read the ratios, and the
load average printed with each part):

* ``limits``: this machine's float32 matmul peak (GFLOP/s) and memory bandwidth (GB/s), and what they bound
  SmolLM2-135M greedy decoding to (tokens/s: every step reads all the weights; every token costs 2 x params FLOPs);
* ``smollm2``: SmolLM2-135M-Instruct greedy tokens/s, ours against transformers, at batch 1, 8 and 32 (end to end:
  prefill and decoding, as ``generate`` runs them);
* ``decode``: SmolLM2 decoding alone, the steady-state step (the same prompts prefilled, then 32 steps with no end
  token, minus one step), ours against transformers at batch 1, 8 and 32, against the limits: the figure the
  memory and compute bounds speak of, which the end-to-end one (with its prefill) cannot reach;
* ``sampled``: the same step with the official rollout sampler (temperature 0.6, top-k 20, top-p 0.95; transformers
  through its own logits warpers), at batch 1 and 8;
* ``prefill_dto``: a 256-token SmolLM2 prefill, and a DTO-shaped step (a 128-token prefix and 64 soft tokens,
  forward and backward to the soft tokens' logits), ours against transformers on the same weights;
* ``uneven``: SmolLM2 sampled on prompts whose continuations end at very different lengths, 8 rows: the queue
  against fixed batches (seconds for the whole set);
* ``testbed``: greedy time per problem on the bundled testbed at batch 1, 8 and 32 (``generate``, warm): the queue
  (continuous batching) against fixed batches;
* ``nabla``: the ∇-Reasoner on the testbed with the demo's settings (verifier reward, N = 8), warm time per
  problem at batch 1, 8, 16 and 32: the queue (continuous batching) against fixed batches;
* ``nabla_smollm2``: the ∇-Reasoner on SmolLM2-135M with a small random 2-layer reward model (official MATH-500
  settings, 32 new tokens, batch 1, warm): seconds per official model call.

    python -m experiments.bench_throughput [--parts limits,smollm2,decode,e2e,sampled,prefill_dto,uneven,testbed,nabla,nabla_smollm2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.timing import median_time  # noqa: E402

PARTS = ("limits", "smollm2", "decode", "e2e", "sampled", "prefill_dto", "uneven", "testbed", "nabla", "nabla_smollm2")
TESTBED = os.path.join(os.path.dirname(__file__), "..", "nabla_jax", "testbed", "models")


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def machine_limits() -> tuple[float, float]:
    """(float32 matmul GFLOP/s, memory GB/s), measured with XLA on this machine."""
    a = jnp.ones((2048, 2048), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    gflops = 2 * 2048**3 / median_time(lambda: matmul(a).block_until_ready(), 5) / 1e9
    big = jnp.ones((512 * 2**20 // 4,), jnp.float32)  # 512 MiB, far beyond the caches
    total = jax.jit(jnp.sum)
    total(big).block_until_ready()
    gbs = big.nbytes / median_time(lambda: total(big).block_until_ready(), 5) / 1e9
    return gflops, gbs


def part_limits(args, shared) -> None:
    from nabla_jax.loading import SMOLLM2_NAME, load_policy
    from nabla_jax.models.decoder import count_params

    gflops, gbs = machine_limits()
    policy = load_policy(SMOLLM2_NAME)
    params = count_params(policy.params)
    weight_bytes = 4 * params
    shared["policy"] = policy
    print(f"[limits] {load()}: float32 matmul {gflops:.0f} GFLOP/s, memory read {gbs:.1f} GB/s; SmolLM2-135M "
          f"{params / 1e6:.0f}M params = {weight_bytes / 1e6:.0f} MB float32")
    for batch in (1, 8, 32):
        memory_bound = batch * gbs * 1e9 / weight_bytes
        compute_bound = gflops * 1e9 / (2 * params)
        print(f"  batch {batch:2d}: memory-bound {memory_bound:6.0f} tok/s, compute-bound {compute_bound:6.0f} tok/s, "
              f"limit {min(memory_bound, compute_bound):6.0f} tok/s")
    shared["limits"] = (gflops, gbs, weight_bytes, params)


def versus_line(batch: int, ours: float, theirs: float, shared) -> str:
    """One batch size's tokens/s, ours against transformers, and ours against the limit when ``limits`` ran."""
    line = f"  batch {batch:2d}: ours {ours:6.1f} tok/s, transformers {theirs:6.1f} tok/s, ratio {ours / theirs:.2f}"
    if "limits" in shared:
        gflops, gbs, weight_bytes, params = shared["limits"]
        bound = min(batch * gbs * 1e9 / weight_bytes, gflops * 1e9 / (2 * params))
        line += f"; ours at {100 * ours / bound:.0f}% of the limit {bound:.0f} tok/s"
    return line + f"  ({load()})"


def smollm2_pair(shared):
    """SmolLM2-135M-Instruct as ours and as a transformers model on the same float32 weights."""
    import tempfile

    import torch
    import transformers
    from convert.hf import save_hf_params
    from nabla_jax.loading import SMOLLM2_NAME, load_policy

    if "torch_model" not in shared:
        policy = shared.get("policy") or load_policy(SMOLLM2_NAME)
        with tempfile.TemporaryDirectory() as tmp:
            save_hf_params(policy.config, policy.params, os.path.join(tmp, "hf"))
            model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(tmp, "hf"), dtype=torch.float32)
        shared["policy"], shared["torch_model"] = policy, model.eval()
    return shared["policy"], shared["torch_model"]


def part_smollm2(args, shared) -> None:
    import torch
    from experiments.bench_generation import PROBLEMS, hf_generate, ours_generate
    from nabla_jax.generation import bucket_length, chat_prompt_ids

    policy, model = smollm2_pair(shared)
    encoded = [chat_prompt_ids(policy.tokenizer, p) for p in PROBLEMS]
    by_bucket = {}
    for ids in encoded:
        by_bucket.setdefault(bucket_length(len(ids)), []).append(ids)
    same_bucket = max(by_bucket.values(), key=len)
    n = args.max_new_tokens
    print(f"[smollm2] greedy, float32, max_new_tokens={n}, torch threads {torch.get_num_threads()}")
    for batch in (1, 8, 32):
        prompts = (same_bucket * 8)[:batch]
        hf_generate(model, policy.tokenizer, prompts, 4)  # warm-up
        hf_tokens, hf_seconds = hf_generate(model, policy.tokenizer, prompts, n)
        ours_tokens, ours_seconds, _ = ours_generate(policy, prompts, n)
        print(versus_line(batch, ours_tokens / ours_seconds, hf_tokens / hf_seconds, shared))


def decode_step_ours(policy, ids: np.ndarray, lengths: np.ndarray, steps: int, sampler=None) -> float:
    """Seconds per decode step of the library's rollout loop (greedy, or ``sampler``; no end token): ``steps + 1``
    tokens minus 1."""
    from nabla_jax.generation.rollouts import RolloutSpec, rollout_batch
    from nabla_jax.generation.sampling import SamplingConfig

    keys = jax.random.split(jax.random.key(0), len(ids))
    args = (jnp.asarray(ids, jnp.int32), jnp.asarray(lengths, jnp.int32), keys)

    def run(n):
        spec = RolloutSpec(n, sampler or SamplingConfig(0.0))
        return lambda: rollout_batch(policy.config, policy.params, spec, *args).tokens.block_until_ready()

    long, short = run(steps + 1), run(1)
    long(), short()
    return (median_time(long, 3) - median_time(short, 3)) / steps


def torch_sampler(sampler):
    """The next token from ``logits [B, V]``: greedy, or ``sampler``'s temperature, top-k and top-p through
    transformers' own logits warpers and a multinomial draw (what ``generate(do_sample=True)`` runs)."""
    import torch
    import transformers

    if sampler is None:
        return lambda logits: logits.argmax(-1, keepdim=True)
    warpers = transformers.LogitsProcessorList([
        transformers.TemperatureLogitsWarper(sampler.temperature), transformers.TopKLogitsWarper(sampler.top_k),
        transformers.TopPLogitsWarper(sampler.top_p),
    ])
    return lambda logits: torch.multinomial(torch.softmax(warpers(None, logits), -1), 1)


def decode_step_torch(model, ids: np.ndarray, lengths: np.ndarray, steps: int, sampler=None) -> float:
    """Seconds per decode step of transformers' cached forward (greedy, or ``sampler``), timed after the prefill."""
    import torch

    pick = torch_sampler(sampler)
    width = ids.shape[1]
    left = np.stack([np.roll(row, width - n) for row, n in zip(ids, lengths, strict=True)])  # left-padded
    mask = torch.tensor(np.arange(width)[None] >= (width - lengths)[:, None], dtype=torch.long)

    def run():
        with torch.no_grad():
            out = model(torch.tensor(left), attention_mask=mask, use_cache=True)
            cache, token, attention = out.past_key_values, pick(out.logits[:, -1]), mask
            began = time.perf_counter()
            for _ in range(steps):
                attention = torch.cat([attention, torch.ones_like(token)], 1)
                out = model(token, attention_mask=attention, past_key_values=cache, use_cache=True)
                cache, token = out.past_key_values, pick(out.logits[:, -1])
            return time.perf_counter() - began

    run()
    return sorted(run() for _ in range(3))[1] / steps


def part_decode(args, shared, sampled: bool = False) -> None:
    """``decode``: the greedy step at batch 1, 8 and 32; ``sampled``: the step with the official rollout sampler
    (temperature 0.6, top-k 20, top-p 0.95) at batch 1 and 8."""
    import torch
    from experiments.bench_generation import PROBLEMS
    from nabla_jax.generation import chat_prompt_ids
    from nabla_jax.generation.sampling import SamplingConfig

    policy, model = smollm2_pair(shared)
    encoded = [chat_prompt_ids(policy.tokenizer, p) for p in PROBLEMS]
    width = max(len(ids) for ids in encoded)
    steps = args.max_new_tokens
    sampler = SamplingConfig(0.6, 20, 0.95) if sampled else None
    how = "sampled (T 0.6, top-k 20, top-p 0.95)" if sampled else "greedy"
    print(f"[{'sampled' if sampled else 'decode'}] SmolLM2 {how} decode step alone ({steps} steps after the prefill, "
          f"no end token), torch threads {torch.get_num_threads()}")
    for batch in (1, 8) if sampled else (1, 8, 32):
        rows = (encoded * 4)[:batch]
        lengths = np.asarray([len(r) for r in rows])
        ids = np.asarray([r + [0] * (width - len(r)) for r in rows])
        ours = batch / decode_step_ours(policy, ids, lengths, steps, sampler)
        print(versus_line(batch, ours, batch / decode_step_torch(model, ids, lengths, steps, sampler), shared))


E2E_PROMPT = "Write a short story about a robot who learns to paint."  # SmolLM2 writes past 128 tokens


def part_e2e(args, shared) -> None:
    """``e2e``: ``nabla_jax.generate`` exactly as a user calls it (strings in, results out, greedy) against
    transformers ``generate`` on the same weights and chat prompts, at batch 1 and 8 with 32 and 128 new tokens
    (medians of ``--repeats`` warm calls), and the marginal rate between the two lengths against the decode step
    alone (``decode_step_ours``, the same rows)."""
    import torch
    from experiments.bench_generation import hf_generate
    from nabla_jax.generation import chat_prompt_ids, generate

    policy, model = smollm2_pair(shared)
    print(f"[e2e] SmolLM2 greedy end to end: nabla_jax.generate against transformers generate, torch threads "
          f"{torch.get_num_threads()}")
    for batch in (1, 8):
        prompts = [E2E_PROMPT] * batch
        encoded = [chat_prompt_ids(policy.tokenizer, p) for p in prompts]
        seconds, tokens = {}, {}
        for n in (32, 128):
            ours = lambda: generate(policy, prompts, max_new_tokens=n, temperature=0.0, batch_size=batch)  # noqa: E731
            ours()
            runs = []
            for _ in range(args.repeats):
                began = time.perf_counter()
                results = ours()
                runs.append(time.perf_counter() - began)
            seconds[n], tokens[n] = sorted(runs)[len(runs) // 2], sum(len(r.token_ids) for r in results)
            hf_generate(model, policy.tokenizer, encoded, 4)
            theirs = sorted((hf_generate(model, policy.tokenizer, encoded, n) for _ in range(args.repeats)), key=lambda r: r[1])
            hf_tokens, hf_seconds = theirs[len(theirs) // 2]
            print(f"  batch {batch}, {n:3d} new tokens: ours {tokens[n] / seconds[n]:6.1f} tok/s, transformers "
                  f"{hf_tokens / hf_seconds:6.1f} tok/s, ratio {(tokens[n] / seconds[n]) / (hf_tokens / hf_seconds):.2f}"
                  f"  ({load()})")
        marginal = (tokens[128] - tokens[32]) / (seconds[128] - seconds[32])
        ids = np.asarray(encoded)
        alone = batch / decode_step_ours(policy, ids, np.asarray([len(e) for e in encoded]), 96)
        print(f"  batch {batch}: end to end at the margin (32 -> 128 tokens) {marginal:.1f} tok/s, the decode step "
              f"alone {alone:.1f} tok/s: {100 * marginal / alone:.0f}%  ({load()})")


def part_sampled(args, shared) -> None:
    part_decode(args, shared, sampled=True)


def soft_token_loss_jax(config, params, logits_z, prefix):
    """The shape of a DTO step: soft tokens ``softmax(z)`` after a prefix, through the model, scored by the
    cross-entropy of each soft token under the model's prediction (the likelihood term); differentiated in z."""
    from nabla_jax.models import decoder

    soft = jax.nn.softmax(logits_z, axis=-1)
    table = decoder.embedding_matrix(params)
    embeds = jnp.concatenate([table[prefix], soft @ table], axis=0)[None]
    length = embeds.shape[1]
    hidden, _ = decoder.forward(config, params, embeds, jnp.arange(length)[None], jnp.ones((1, length), bool))
    logp = jax.nn.log_softmax(decoder.lm_logits(config, params, hidden[0, prefix.shape[0] - 1 : -1]), axis=-1)
    return -jnp.sum(soft * logp)


def soft_token_loss_torch(model, logits_z, prefix):
    import torch

    soft = torch.softmax(logits_z, dim=-1)
    table = model.get_input_embeddings().weight
    embeds = torch.cat([table[prefix], soft @ table], dim=0)[None]
    logits = model(inputs_embeds=embeds).logits[0, prefix.shape[0] - 1 : -1]
    return -(soft * torch.log_softmax(logits, dim=-1)).sum()


def part_prefill_dto(args, shared) -> None:
    import torch

    policy, model = smollm2_pair(shared)
    config, params = policy.config, policy.params
    rng = np.random.RandomState(0)
    ids = rng.randint(0, config.vocab_size, (1, 256))
    torch_ids = torch.tensor(ids)

    def ours_prefill():
        jax.block_until_ready(policy.logits(ids))  # jitted inside

    def torch_prefill():
        with torch.no_grad():
            model(torch_ids)

    ours_prefill(), torch_prefill()
    ours_s, torch_s = median_time(ours_prefill, args.repeats), median_time(torch_prefill, args.repeats)
    print(f"[prefill_dto] SmolLM2 prefill, 256 tokens, batch 1: ours {ours_s:.3f} s, transformers {torch_s:.3f} s, "
          f"ratio {torch_s / ours_s:.2f}x  ({load()})")
    prefix, ahead = ids[0, :128], 64
    z = rng.randn(ahead, config.vocab_size).astype(np.float32)
    step = jax.jit(jax.grad(lambda z_: soft_token_loss_jax(config, params, z_, jnp.asarray(prefix))))
    torch_prefix = torch.tensor(prefix)

    def ours_dto():
        jax.block_until_ready(step(z))

    def torch_dto():
        z_t = torch.tensor(z, requires_grad=True)
        soft_token_loss_torch(model, z_t, torch_prefix).backward()

    ours_dto(), torch_dto()
    ours_s, torch_s = median_time(ours_dto, args.repeats), median_time(torch_dto, args.repeats)
    print(f"  DTO-shaped step (128-token prefix + 64 soft tokens, forward + backward to the logits z): ours "
          f"{ours_s:.3f} s, transformers {torch_s:.3f} s, ratio {torch_s / ours_s:.2f}x  ({load()})")


def part_uneven(args, shared) -> None:
    """Continuations of uneven length, where continuous batching should pay: SmolLM2 sampled at T = 0.7 on the
    benchmark prompts (each up to 128 new tokens, most ending at EOS well before), 8 row slots."""
    from experiments.bench_generation import PROBLEMS
    from nabla_jax.generation import RolloutSpec, SamplingConfig, batch_rollouts, chat_prompt_ids, eos_token_ids
    from nabla_jax.generation import queue_rollouts
    from nabla_jax.loading import SMOLLM2_NAME, load_policy

    policy = shared.get("policy") or load_policy(SMOLLM2_NAME)
    encoded = [chat_prompt_ids(policy.tokenizer, p) for p in PROBLEMS] * 2
    spec = RolloutSpec(128, SamplingConfig(0.7, 50, 0.95), eos_token_ids(policy.config, policy.tokenizer), (), 0)
    keys = jax.random.split(jax.random.key(0), len(encoded))
    runs = {name: (lambda fn=fn: fn(policy.config, policy.params, spec, encoded, keys, 8))
            for name, fn in (("queue", queue_rollouts), ("fixed", batch_rollouts))}
    lengths = [len(tokens) for tokens, _ in runs["queue"]()]
    runs["fixed"]()
    times = {name: median_time(fn, args.repeats) for name, fn in runs.items()}
    print(f"[uneven] SmolLM2 sampled, {len(encoded)} prompts, 128 new tokens at most, 8 rows; continuation lengths "
          f"{min(lengths)}-{max(lengths)} (mean {np.mean(lengths):.0f}): queue {times['queue']:.1f} s, fixed batches "
          f"{times['fixed']:.1f} s, ratio {times['fixed'] / times['queue']:.2f}x  ({load()})")


def testbed_prompts(count: int) -> list[str]:
    from nabla_jax.evaluation.datasets import load_benchmark, user_message

    problems = load_benchmark("testbed").problems[:count]
    return [user_message(p, None) for p in problems]


def greedy_spec(policy, n: int):
    from nabla_jax.generation import RolloutSpec, SamplingConfig, eos_token_ids

    return RolloutSpec(n, SamplingConfig(0.0), eos_token_ids(policy.config, policy.tokenizer), (), 0)


def fixed_batch_greedy(policy, prompt_ids: list[list[int]], n: int, batch: int) -> None:
    """Greedy continuations in fixed batches (each runs until its longest row ends): the plain batched loop."""
    from nabla_jax.generation.queue import batch_rollouts

    keys = jax.random.split(jax.random.key(0), len(prompt_ids))
    batch_rollouts(policy.config, policy.params, greedy_spec(policy, n), prompt_ids, keys, batch)


def queue_greedy(policy, prompt_ids: list[list[int]], n: int, batch: int) -> None:
    """The same continuations by continuous batching (what ``generate`` runs after tokenising)."""
    from nabla_jax.generation import queue_rollouts

    keys = jax.random.split(jax.random.key(0), len(prompt_ids))
    queue_rollouts(policy.config, policy.params, greedy_spec(policy, n), prompt_ids, keys, batch)


def part_testbed(args, shared) -> None:
    from nabla_jax.generation import chat_prompt_ids, generate
    from nabla_jax.loading import load_policy

    policy = load_policy(os.path.join(TESTBED, "policy"))
    prompts = testbed_prompts(args.testbed_problems)
    encoded = [chat_prompt_ids(policy.tokenizer, p) for p in prompts]
    print(f"[testbed] greedy, {len(prompts)} problems, max_new_tokens 64, ms/problem: generate (tokenising, then the "
          "queue), the queue alone (continuous batching) and fixed batches, on the same token ids")
    base = None
    for batch in (1, 8, 32):
        def full():
            return generate(policy, prompts, max_new_tokens=64, temperature=0.0, batch_size=batch)

        def queue():
            queue_greedy(policy, encoded, 64, batch)

        def fixed():
            fixed_batch_greedy(policy, encoded, 64, batch)

        full(), queue(), fixed()  # compile every shape
        times = {name: median_time(fn, args.repeats) / len(prompts) for name, fn in
                 (("generate", full), ("queue", queue), ("fixed", fixed))}
        base = base or times["queue"]
        print(f"  batch {batch:2d}: generate {1e3 * times['generate']:6.2f}, queue {1e3 * times['queue']:6.2f} "
              f"(throughput {base / times['queue']:5.1f}x batch 1), fixed batches {1e3 * times['fixed']:6.2f}  ({load()})")


def demo_reasoner(policy_path: str, reward_spec: str, clip: float | None, **overrides):
    from nabla_jax.commands.demo import DEMO_NABLA
    from nabla_jax.loading import load_policy
    from nabla_jax.reasoner import NablaReasoner
    from nabla_jax.rewards import load_reward

    policy = load_policy(policy_path)
    reward = load_reward(reward_spec, policy=policy, clip=clip)
    config = DEMO_NABLA.replace(**overrides)
    return NablaReasoner(policy, reward, config)


def part_nabla(args, shared) -> None:
    reasoner = demo_reasoner(os.path.join(TESTBED, "policy"), "likelihood:" + os.path.join(TESTBED, "verifier"), -6.0,
                             max_n_generations=8, max_new_tokens=64, rollout_temperature=0.6, rollout_top_k=20,
                             rollout_top_p=0.95)
    prompts = testbed_prompts(args.nabla_problems)
    print(f"[nabla] testbed, demo settings (verifier, N = 8, 64 new tokens), {len(prompts)} problems")
    base = None
    for batch in (1, 8, 16, 32):
        def queue():
            return reasoner.generate(prompts, seed=0, batch_size=batch)

        queue()
        seconds = median_time(queue, args.repeats) / len(prompts)
        base = base or seconds
        line = f"  batch {batch:2d}: queue {1e3 * seconds:7.1f} ms/problem ({seconds / base:.2f}x batch 1)"
        if batch > 1:
            fixed = fixed_batches(reasoner, prompts, batch, args.repeats)
            line += f"; fixed batches {1e3 * fixed:7.1f} ms/problem ({fixed / base:.2f}x batch 1)"
        print(line + f"  ({load()})")


def fixed_batches(reasoner, prompts, batch: int, repeats: int) -> float:
    """Seconds per problem of the plain batched loop: batches of ``batch`` problems, each run to its last problem."""
    from nabla_jax.reasoner.loop import decode_batch
    from nabla_jax.seeds import seed_key

    encoded = reasoner.encode(prompts)
    spec = reasoner.spec()
    groups = [list(range(i, min(i + batch, len(prompts)))) for i in range(0, len(prompts), batch)]
    problems = [reasoner.stack_problems([encoded[i] for i in g], g, seed_key(0)) for g in groups]

    def run():
        for p in problems:
            jax.block_until_ready(decode_batch(reasoner.models, reasoner.config, spec, reasoner.rm_pad, p))

    run()
    return median_time(run, repeats) / len(prompts)


def smollm2_reasoner(shared):
    """The ∇-Reasoner on SmolLM2-135M with a random 2-layer reward model of its shape (official settings, 32 new
    tokens)."""
    import tempfile

    from convert.hf import save_hf_params
    from nabla_jax.loading import SMOLLM2_NAME, load_policy
    from nabla_jax.models.config import config_from_dict, config_to_dict
    from nabla_jax.models.decoder import init_params
    from nabla_jax.reasoner import NablaConfig, NablaReasoner
    from nabla_jax.rewards.loaders import load_reward

    policy = shared.get("policy") or load_policy(SMOLLM2_NAME)
    small = {**config_to_dict(policy.config), "num_hidden_layers": 2, "architectures": ["LlamaForSequenceClassification"],
             "num_labels": 1}
    reward_config = config_from_dict(small)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "reward")
        save_hf_params(reward_config, init_params(reward_config, jax.random.key(1)), path)
        policy.tokenizer.save_pretrained(path)
        reward = load_reward(path)
        return NablaReasoner(policy, reward, NablaConfig(max_new_tokens=32))


SMOLLM2_NABLA_PROMPT = ["What is the sum of the interior angles of a hexagon, and why?"]


def part_nabla_smollm2(args, shared) -> None:
    """Seconds per official model call, with the prefix cache carried across iterations (the default) and rebuilt
    at every iteration (``carry_prefix=False``, as the official code re-runs it): three warm runs of each,
    alternating, and their medians."""
    import copy

    base = smollm2_reasoner(shared)
    prompt, reasoners, seconds, flops = SMOLLM2_NABLA_PROMPT, {}, {False: [], True: []}, {}
    for carry in seconds:
        reasoners[carry] = copy.copy(base)
        reasoners[carry].config = dataclasses.replace(base.config, carry_prefix=carry)
        result = reasoners[carry].generate(prompt, seed=0, batch_size=1)[0]  # compiles
        flops[carry] = result.stats["flops"]
    for _ in range(3):
        for carry, reasoner in reasoners.items():
            began = time.perf_counter()
            reasoner.generate(prompt, seed=0, batch_size=1)
            seconds[carry].append(time.perf_counter() - began)
    calls = result.stats["model_calls_official"]
    for carry, times in seconds.items():
        median = sorted(times)[1]
        print(f"[nabla_smollm2] official MATH-500 settings, 32 new tokens, batch 1, warm, carry_prefix={carry}: "
              f"median {median:.1f} s ({', '.join(f'{t:.1f}' for t in times)}) for {calls} official model calls = "
              f"{median / calls:.3f} s/call  ({load()})")
        if "limits" in shared:  # the work the run did, at the matmul peak: no schedule of it can be faster
            work, gflops = flops[carry], shared["limits"][0]
            floor = work / (gflops * 1e9)
            print(f"  {work / 1e12:.2f} TFLOP of model work ({work / median / 1e9:.0f} GFLOP/s, "
                  f"{100 * work / median / 1e9 / gflops:.0f}% of the {gflops:.0f} GFLOP/s matmul peak); at the "
                  f"peak {floor:.1f} s = {floor / calls:.3f} s/call")
    print(f"  carrying the prefix: {sorted(seconds[False])[1] / sorted(seconds[True])[1]:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="SmolLM2 greedy tokens per row")
    parser.add_argument("--testbed-problems", type=int, default=128)
    parser.add_argument("--nabla-problems", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    print(f"{os.cpu_count()} cores, jax {jax.__version__}, {load()}")
    shared: dict = {}
    for part in parts:
        globals()["part_" + part](args, shared)


if __name__ == "__main__":
    main()
