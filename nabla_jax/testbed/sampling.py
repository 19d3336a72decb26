"""A small jitted sampler for the testbed models (KV-cached; temperature only, 0 = greedy).

Prompts are left-padded to one length, so every row writes its n-th new token into the same cache slot and the
whole decode is one ``lax.scan``. Rows that emitted EOS keep emitting padding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.models import decoder
from nabla_jax.models.config import DecoderConfig
from nabla_jax.testbed.encoding import EOS_ID, PAD_ID, PROMPT_LENGTH, pad_left


@functools.partial(jax.jit, static_argnames=("config", "max_new", "temperature"))
def sample_ids(config: DecoderConfig, params, prompt_ids, prompt_valid, key, max_new: int, temperature: float):
    """``[B, max_new]`` generated ids (EOS included, padding after it) for left-padded ``prompt_ids [B, P]``."""
    batch, prompt_len = prompt_ids.shape
    total = prompt_len + max_new
    cache = decoder.init_cache(config, batch, total, decoder.params_dtype(params))
    kv_valid = jnp.concatenate([prompt_valid, jnp.zeros((batch, max_new), bool)], axis=1)
    positions = jnp.maximum(jnp.cumsum(prompt_valid, axis=1) - 1, 0)
    hidden, cache = decoder.forward(config, params, decoder.embed(params, prompt_ids), positions, kv_valid, cache, 0)
    logits = decoder.lm_logits(config, params, hidden[:, -1])
    next_position = positions[:, -1] + 1

    def choose(logits, key):
        if temperature == 0.0:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)

    def step(carry, inputs):
        cache, kv_valid, logits, done = carry
        slot, step_key = inputs
        token = jnp.where(done, PAD_ID, choose(logits, step_key))
        kv_valid = kv_valid.at[:, slot].set(True)
        position = (next_position + slot - prompt_len)[:, None]
        hidden, cache = decoder.forward(
            config, params, decoder.embed(params, token[:, None]), position, kv_valid, cache, slot
        )
        logits = decoder.lm_logits(config, params, hidden[:, 0])
        return (cache, kv_valid, logits, done | (token == EOS_ID)), token

    slots = prompt_len + jnp.arange(max_new)
    keys = jax.random.split(key, max_new)
    _, tokens = jax.lax.scan(step, (cache, kv_valid, logits, jnp.zeros((batch,), bool)), (slots, keys))
    return tokens.T


def sample(config, params, prompts: list[list[int]], key, max_new: int, temperature: float, batch_size: int = 512):
    """Generated ids ``[N, max_new]`` (numpy) for prompt id lists, in chunks of ``batch_size`` rows.

    The last chunk is padded to a full chunk so one shape is compiled; chunk c uses ``fold_in(key, c)``."""
    ids, valid = pad_left(prompts, max(PROMPT_LENGTH, max(len(p) for p in prompts)))
    out = []
    for c, start in enumerate(range(0, len(prompts), batch_size)):
        chunk_ids, chunk_valid = ids[start : start + batch_size], valid[start : start + batch_size]
        rows = len(chunk_ids)
        if rows < batch_size and len(prompts) > batch_size:
            chunk_ids = np.concatenate([chunk_ids, np.repeat(chunk_ids[-1:], batch_size - rows, 0)])
            chunk_valid = np.concatenate([chunk_valid, np.repeat(chunk_valid[-1:], batch_size - rows, 0)])
        tokens = sample_ids(
            config, params, jnp.asarray(chunk_ids), jnp.asarray(chunk_valid), jax.random.fold_in(key, c),
            max_new=max_new, temperature=float(temperature),
        )
        out.append(np.asarray(tokens)[:rows])
    return np.concatenate(out)
