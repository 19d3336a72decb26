"""Flax layers of the decoder. Each is used through ``Module.apply``, a pure function of its params.

Parameter names follow the checkpoint layout (``q_proj``, ``gate_proj``, ...); dense kernels are ``[in, out]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nabla_jax.models.config import DecoderConfig
from nabla_jax.models.rope import apply_rotary

INIT = nn.initializers.normal(stddev=0.02)


class RMSNorm(nn.Module):
    """RMS normalisation computed in float32, then cast back, then scaled (transformers' order of operations)."""

    eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.dtype)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale * normed.astype(x.dtype)


def write_cache(cache: jax.Array, new: jax.Array, write_index, axis: int = 1) -> jax.Array:
    """``new`` into ``cache`` at slot ``write_index`` of the slot ``axis`` (``[B, S, ...]``: axis 1; the
    :data:`HEADS_MAJOR` keys ``[B, kvh, hd, S]``: 3, values ``[B, kvh, S, hd]``: 2): one slot for the whole batch
    (a scalar: one ``dynamic_update_slice``) or one per row (``[B]``: rows refilled at different times)."""
    new = new.astype(cache.dtype)
    if jnp.ndim(write_index) == 0:
        return jax.lax.dynamic_update_slice_in_dim(cache, new, write_index, axis=axis)
    put = lambda row, values, slot: jax.lax.dynamic_update_slice_in_dim(row, values, slot, axis=axis - 1)  # noqa: E731
    return jax.vmap(put)(cache, new, write_index)


# Cache layouts. SLOTS_MAJOR: keys and values [B, S, kvh, hd]. HEADS_MAJOR (decoding): keys [B, kvh, hd, S] and
# values [B, kvh, S, hd], so that each (row, kv head) of single-query attention is a plain [g, hd] x [hd, S] and
# [g, S] x [S, hd] product, which XLA CPU runs fastest (docs/design-notes.md); no step transposes it.
SLOTS_MAJOR, HEADS_MAJOR = "slots", "heads"
SLOT_AXES = {SLOTS_MAJOR: (1, 1), HEADS_MAJOR: (3, 2)}  # the slot axis of the keys and of the values


def _attend_slots_major(q, k, v, mask, dtype):
    """Grouped-query attention: q ``[B, T, kvh, g, hd]``, keys/values ``[B, S, kvh, hd]``, mask ``[B, T, S]``;
    returns ``[B, T, kvh, g, hd]``."""
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k.astype(q.dtype)).astype(jnp.float32)
    scores = scores * (q.shape[-1] ** -0.5)
    scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(dtype)
    return jnp.einsum("bkgts,bskd->btkgd", weights, v.astype(dtype))


def _attend_heads_major(q, k, v, mask, dtype):
    """:func:`_attend_slots_major` over the :data:`HEADS_MAJOR` cache. A query's T and g axes are merged, so each
    (row, kv head) is one product: with T as an axis of its own, XLA CPU compiled single-query attention into
    ``[S, hd] x [hd, g]`` products and transposes: SmolLM2's whole decode step at 32 rows was 1.15x slower in the
    previous cache layout and 1.46x in this one."""
    batch, length, kv_heads, groups, head_dim = q.shape
    queries = q.transpose(0, 2, 1, 3, 4).reshape(batch, kv_heads, length * groups, head_dim)  # (t, g) order
    scores = jnp.einsum("bkqd,bkds->bkqs", queries, k.astype(q.dtype)).astype(jnp.float32)
    scores = scores * (head_dim**-0.5)
    visible = jnp.repeat(mask, groups, axis=1)[:, None]  # [B, 1, T·g, S]
    scores = jnp.where(visible, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(dtype)
    out = jnp.einsum("bkqs,bksd->bkqd", weights, v.astype(dtype))
    return out.reshape(batch, kv_heads, length, groups, head_dim).transpose(0, 2, 1, 3, 4)


def _dense(features: int, use_bias: bool, name: str, dtype) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, name=name, kernel_init=INIT, dtype=dtype, param_dtype=dtype)


class Attention(nn.Module):
    """Grouped-query attention with rotary embeddings, optional q/k RMSNorm (Qwen3) and an explicit KV cache."""

    config: DecoderConfig
    dtype: jnp.dtype = jnp.float32
    cache_layout: str = SLOTS_MAJOR  # HEADS_MAJOR: the layout decoding keeps (no per-step transposes of the cache)

    @nn.compact
    def __call__(self, x, cos, sin, mask, cache_kv=None, write_index=0):
        cfg = self.config
        batch, length, _ = x.shape
        q = _dense(cfg.num_heads * cfg.head_dim, cfg.qkv_bias, "q_proj", self.dtype)(x)
        k = _dense(cfg.num_kv_heads * cfg.head_dim, cfg.qkv_bias, "k_proj", self.dtype)(x)
        v = _dense(cfg.num_kv_heads * cfg.head_dim, cfg.qkv_bias, "v_proj", self.dtype)(x)
        q = q.reshape(batch, length, cfg.num_heads, cfg.head_dim)
        k = k.reshape(batch, length, cfg.num_kv_heads, cfg.head_dim)
        v = v.reshape(batch, length, cfg.num_kv_heads, cfg.head_dim)
        if cfg.qk_norm:
            q = RMSNorm(cfg.rms_norm_eps, self.dtype, name="q_norm")(q)
            k = RMSNorm(cfg.rms_norm_eps, self.dtype, name="k_norm")(k)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        heads_major = self.cache_layout == HEADS_MAJOR
        if heads_major:
            k, v = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)
        if cache_kv is not None:
            key_axis, value_axis = SLOT_AXES[self.cache_layout]
            k = write_cache(cache_kv[0], k, write_index, key_axis)
            v = write_cache(cache_kv[1], v, write_index, value_axis)
        q = q.reshape(batch, length, cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads, cfg.head_dim)
        out = (_attend_heads_major if heads_major else _attend_slots_major)(q, k, v, mask, self.dtype)
        out = out.reshape(batch, length, cfg.num_heads * cfg.head_dim)
        out = _dense(cfg.hidden_size, cfg.o_bias, "o_proj", self.dtype)(out)
        return out, (k, v)


class MLP(nn.Module):
    config: DecoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        gate = _dense(cfg.intermediate_size, cfg.mlp_bias, "gate_proj", self.dtype)(x)
        up = _dense(cfg.intermediate_size, cfg.mlp_bias, "up_proj", self.dtype)(x)
        return _dense(cfg.hidden_size, cfg.mlp_bias, "down_proj", self.dtype)(jax.nn.silu(gate) * up)


class DecoderLayer(nn.Module):
    config: DecoderConfig
    dtype: jnp.dtype = jnp.float32
    cache_layout: str = SLOTS_MAJOR

    @nn.compact
    def __call__(self, x, cos, sin, mask, cache_kv=None, write_index=0):
        cfg = self.config
        attn_out, new_kv = Attention(cfg, self.dtype, self.cache_layout, name="attn")(
            RMSNorm(cfg.rms_norm_eps, self.dtype, name="input_norm")(x), cos, sin, mask, cache_kv, write_index
        )
        x = x + attn_out
        x = x + MLP(cfg, self.dtype, name="mlp")(RMSNorm(cfg.rms_norm_eps, self.dtype, name="post_attention_norm")(x))
        return x, new_kv
