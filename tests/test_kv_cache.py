"""Prefill into a cache plus one-token decode steps equals one full forward (causal LM, padded batch)."""

import jax.numpy as jnp
import numpy as np

import nabla_jax
from nabla_jax.models import decoder


def test_prefill_then_decode_matches_full_forward(hf_checkpoint):
    directory, _ = hf_checkpoint("qwen3")
    policy = nabla_jax.load_policy(directory)
    cfg, params = policy.config, policy.params
    rng = np.random.RandomState(0)
    total, prompt = 10, 6
    ids = jnp.asarray(rng.randint(3, cfg.vocab_size, (2, total)))
    # row 1 has two left-padding slots: its real tokens start at slot 2
    valid = np.ones((2, total), bool)
    valid[1, :2] = False
    positions = jnp.asarray(np.maximum(np.cumsum(valid, axis=1) - 1, 0))
    valid = jnp.asarray(valid)

    full_hidden, _ = decoder.forward(cfg, params, decoder.embed(params, ids), positions, valid)
    full = decoder.lm_logits(cfg, params, full_hidden)

    cache = decoder.init_cache(cfg, 2, total)
    kv_valid = valid & (jnp.arange(total) < prompt)
    hidden, cache = decoder.forward(
        cfg, params, decoder.embed(params, ids[:, :prompt]), positions[:, :prompt], kv_valid, cache, 0
    )
    steps = [decoder.lm_logits(cfg, params, hidden)]
    for slot in range(prompt, total):
        kv_valid = valid & (jnp.arange(total) <= slot)
        hidden, cache = decoder.forward(
            cfg, params, decoder.embed(params, ids[:, slot : slot + 1]), positions[:, slot : slot + 1], kv_valid, cache, slot
        )
        steps.append(decoder.lm_logits(cfg, params, hidden))
    incremental = jnp.concatenate(steps, axis=1)
    diff = np.abs(np.asarray(incremental - full))[np.asarray(valid)]
    assert diff.max() <= 1e-5


def test_decode_layout_steps_match_full_forward(hf_checkpoint):
    """The decode path: a cacheless prefill, its keys/values in the decode layout (``decode_caches``), then
    one-token steps over per-layer params (``forward_layers``), with a shared write slot and with per-row slots."""
    directory, _ = hf_checkpoint("qwen3")
    policy = nabla_jax.load_policy(directory)
    cfg, params = policy.config, policy.params
    total, prompt = 9, 5
    ids = jnp.asarray(np.random.RandomState(1).randint(3, cfg.vocab_size, (2, total)))
    positions = jnp.broadcast_to(jnp.arange(total), (2, total))
    full_hidden, _ = decoder.forward(cfg, params, decoder.embed(params, ids), positions, jnp.ones((2, total), bool))
    full = decoder.lm_logits(cfg, params, full_hidden)
    layers = decoder.split_layers(params)
    for per_row in (False, True):
        valid = jnp.ones((2, prompt), bool)
        _, kv = decoder.forward(cfg, params, decoder.embed(params, ids[:, :prompt]), positions[:, :prompt], valid)
        caches = decoder.decode_caches(kv, total - prompt)
        steps = []
        for slot in range(prompt, total):
            write = jnp.full((2,), slot) if per_row else slot
            kv_valid = jnp.broadcast_to(jnp.arange(total) <= slot, (2, total))
            hidden, caches = decoder.forward_layers(
                cfg, params, layers, decoder.embed(params, ids[:, slot : slot + 1]), positions[:, slot : slot + 1],
                kv_valid, caches, write,
            )
            steps.append(decoder.lm_logits(cfg, params, hidden))
        diff = np.abs(np.asarray(jnp.concatenate(steps, axis=1) - full[:, prompt:]))
        assert diff.max() <= 1e-5, (per_row, diff.max())
