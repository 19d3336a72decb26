"""Prefill into a cache plus one-token decode steps equals one full forward (causal LM, padded batch)."""

import jax
import jax.numpy as jnp
import numpy as np

import nabla_jax
from nabla_jax.models import decoder
from nabla_jax.models.kv_cache import decode_caches, init_cache, sequence_as_stacked


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

    cache = init_cache(cfg, 2, total)
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
    one-token steps over per-layer params (``forward_layers``), with a shared write slot and with per-row slots,
    and a several-token chunk."""
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
        caches = decode_caches(kv, total - prompt)
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
    # the rest as one chunk (the decode layout's attention merges a query's positions and heads; causal within it)
    hidden, _ = decoder.forward_layers(
        cfg, params, layers, decoder.embed(params, ids[:, prompt:]), positions[:, prompt:],
        jnp.ones((2, total), bool), decode_caches(kv, total - prompt), prompt,
    )
    diff = np.abs(np.asarray(decoder.lm_logits(cfg, params, hidden) - full[:, prompt:]))
    assert diff.max() <= 1e-5, ("chunk", diff.max())


def test_a_rollouts_keys_and_values_by_position_equal_a_pass_over_its_sequence(hf_checkpoint):
    """The ∇-Reasoner's prefix cache takes the policy's keys/values from its rollouts (``sequence_kv``): for rows
    with different prompt lengths and budgets, the prompt's (from the prefill) and each generated token's but the
    last (from the step that fed it back) equal those of one forward over the whole sequence; and a rollout that
    starts after a longer prefix of that sequence, given those keys/values (``prompt_kv``: only the prefix's last
    token runs), equals one that prefills the prefix."""
    from nabla_jax.generation.rollouts import RolloutSpec, rollout_rows
    from nabla_jax.generation.sampling import SamplingConfig

    policy = nabla_jax.load_policy(hf_checkpoint("qwen3")[0])
    cfg, params = policy.config, policy.params
    spec = RolloutSpec(max_new_tokens=6, sampling=SamplingConfig(temperature=1.0, top_k=0))
    buffer, lens, budgets = 10, np.asarray([4, 9]), np.asarray([6, 3])
    prompts = np.random.RandomState(2).randint(3, cfg.vocab_size, (2, buffer))
    keys = jax.random.split(jax.random.key(0), 2)
    slots = buffer + spec.max_new_tokens
    run = jax.jit(rollout_rows, static_argnums=(0, 2), static_argnames="kv_slots")
    out = run(cfg, params, spec, jnp.asarray(prompts), jnp.asarray(lens), keys, jnp.asarray(budgets), kv_slots=slots)
    assert out.kv.k.shape == (2, cfg.num_layers, slots, cfg.num_kv_heads, cfg.head_dim)
    for row in range(2):
        length = int(out.length[row])
        assert length == budgets[row]  # no EOS in the spec: every row runs its whole budget
        ids = np.concatenate([prompts[row, : lens[row]], np.asarray(out.tokens[row, :length])])
        fed = lens[row] + length - 1
        positions = jnp.arange(fed)[None]
        _, kv = decoder.forward(cfg, params, decoder.embed(params, jnp.asarray(ids[None, :fed])), positions,
                                jnp.ones((1, fed), bool))
        for got, want in ((out.kv.k[row], kv.k[:, 0]), (out.kv.v[row], kv.v[:, 0])):
            np.testing.assert_allclose(np.asarray(got[:, :fed]), np.asarray(want), rtol=1e-5, atol=1e-5)

    longer = jnp.asarray(lens + 2)  # two generated tokens join each prompt: their keys/values but the last are real
    prompt_kv = sequence_as_stacked(out.kv)
    given, prefilled = (run(cfg, params, spec, out.sequence, longer, keys, prompt_kv=kv) for kv in (prompt_kv, None))
    assert np.asarray(given.tokens).tolist() == np.asarray(prefilled.tokens).tolist()
    np.testing.assert_allclose(np.asarray(given.latents), np.asarray(prefilled.latents), rtol=1e-4, atol=1e-4)
