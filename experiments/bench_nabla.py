"""Throughput of the jitted, batched ∇-Reasoner on small random models, measured side by side in one run:
problems per second at batch 1, 4 and 16; the batch-level conds against a plain vmap of the one-problem loop
(where every lax.cond becomes a select); and the jitted decoder against the eager reference loop.

    python -m experiments.bench_nabla [--problems 16] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import time

import jax


def small_models(seed: int = 0):
    from nabla_jax.char_tokenizer import build_char_tokenizer
    from nabla_jax.loading import Policy
    from nabla_jax.rewards import Reward
    from nabla_jax.models.config import config_from_dict
    from nabla_jax.models.decoder import init_params

    tokenizer = build_char_tokenizer()
    base = {
        "model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
        "pad_token_id": 0, "eos_token_id": 2,
    }
    policy_config = config_from_dict({**base, "architectures": ["LlamaForCausalLM"]})
    reward_config = config_from_dict({**base, "architectures": ["LlamaForSequenceClassification"], "num_labels": 1})
    k1, k2 = jax.random.split(jax.random.key(seed))
    return (
        Policy(policy_config, init_params(policy_config, k1), tokenizer, "random-policy"),
        Reward(reward_config, init_params(reward_config, k2), tokenizer, "random-reward"),
    )


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--eager-problems", type=int, default=2)
    args = parser.parse_args()

    from nabla_jax.reasoner import NablaConfig, NablaReasoner
    from nabla_jax.compile_count import compile_requests
    from tests.support.nabla_reference import reference_decode

    policy, reward = small_models()
    config = NablaConfig.from_settings(max_new_tokens=args.max_new_tokens, max_n_generations=4, max_iters=5,
                         confidence_threshold=0.95, grad_threshold=None, rollout_top_k=0, resample_top_k=0)
    reasoner = NablaReasoner(policy, reward, config)
    prompts = [f"Compute {i}+{2 * i}" for i in range(args.problems)]
    rows = []
    for batch, batch_cond in [(1, True), (4, True), (16, True), (16, False)]:
        reasoner.generate(prompts, batch_size=batch, batch_cond=batch_cond)  # compile this queue (or these batches)
        before = compile_requests()
        seconds = timed(lambda: reasoner.generate(prompts, batch_size=batch, batch_cond=batch_cond))
        assert compile_requests() == before, "a warm run compiled a new program"
        rows.append((batch, batch_cond, seconds))
    eager_prompts = prompts[: args.eager_problems]
    reference_decode(reasoner, eager_prompts[0], jax.random.fold_in(jax.random.key(0), 0))  # compile
    eager = timed(lambda: [reference_decode(reasoner, p, jax.random.fold_in(jax.random.key(0), i))
                           for i, p in enumerate(eager_prompts)]) / len(eager_prompts)
    print(f"∇-Reasoner, random 2-layer d=64 policy and reward, {args.problems} problems, "
          f"max_new_tokens={args.max_new_tokens}, {os.cpu_count()} CPU cores (warm, compile excluded)")
    print(f"{'batch':>6} {'conds':>12} {'s/problem':>10} {'problems/s':>11}")
    for batch, batch_cond, seconds in rows:
        label = "batch-level" if batch_cond else "vmap/select"
        print(f"{batch:>6} {label:>12} {seconds / args.problems:10.3f} {args.problems / seconds:11.2f}")
    best = min(seconds for _, _, seconds in rows) / args.problems
    print(f"eager reference loop: {eager:.3f} s/problem; jitted batched (best) is {eager / best:.1f}x faster")
    b16 = {c: s for b, c, s in rows if b == 16}
    print(f"batch 16: batch-level conds vs vmap of the one-problem loop: {b16[False] / b16[True]:.2f}x")
    print(f"programs of the decoder compiled: {compile_requests('decode_queue')} queues, "
          f"{compile_requests('decode_batch')} fixed batches")


if __name__ == "__main__":
    main()
