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


def _dense(features: int, use_bias: bool, name: str, dtype) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, name=name, kernel_init=INIT, dtype=dtype, param_dtype=dtype)


class Attention(nn.Module):
    """Grouped-query attention with rotary embeddings, optional q/k RMSNorm (Qwen3) and an explicit KV cache.

    With a cache (``(k, v, layer)``: every layer's keys and values ``[L, B, S, kvh, hd]`` and this layer's
    index) the chunk's keys and values are written in place at slot ``write_index`` of this layer, the chunk attends
    to the layer's slots, and the updated ``(k, v)`` of every layer is returned; without one, the chunk's own."""

    config: DecoderConfig
    dtype: jnp.dtype = jnp.float32

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
        q = q.reshape(batch, length, cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads, cfg.head_dim)
        keys, values = k, v
        if cache_kv is not None:
            cache_k, cache_v, layer = cache_kv
            start = (layer, 0, write_index, 0, 0)
            k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype)[None], start)
            v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype)[None], start)
            keys, values = k[layer], v[layer]
        if cache_kv is not None and length == 1:
            out = _decode_attention(q, keys, values, mask, self.dtype)
        else:
            out = _chunk_attention(q, keys, values, mask, self.dtype)
        out = out.reshape(batch, length, cfg.num_heads * cfg.head_dim)
        out = _dense(cfg.hidden_size, cfg.o_bias, "o_proj", self.dtype)(out)
        return out, (k, v)


def _chunk_attention(q, keys, values, mask, dtype):
    """Attention of queries ``[B, T, kvh, g, hd]`` over ``keys``/``values`` ``[B, S, kvh, hd]`` (matmuls)."""
    scores = jnp.einsum("btkgd,bskd->bkgts", q, keys.astype(q.dtype)).astype(jnp.float32)
    scores = scores * (q.shape[-1] ** -0.5)
    scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(dtype)
    return jnp.einsum("bkgts,bskd->btkgd", weights, values.astype(dtype))


def _decode_attention(q, keys, values, mask, dtype):
    """One query per row over the cache, as multiply-and-sum loops: on a CPU, batches of tiny [g, hd] x [hd, S]
    matmuls cost far more than their arithmetic (profile in experiments/README). Sums run in float32, as a matmul
    with float32 accumulation."""
    f32 = jnp.float32
    query = q[:, 0].astype(f32)  # [B, kvh, g, hd]
    scores = jnp.sum(query[:, None] * keys.astype(f32)[:, :, :, None, :], axis=-1)  # [B, S, kvh, g]
    scores = jnp.where(mask[:, 0, :, None, None], scores * (q.shape[-1] ** -0.5), jnp.finfo(f32).min)
    weights = jax.nn.softmax(scores, axis=1).astype(dtype).astype(f32)
    out = jnp.sum(weights[..., None] * values.astype(f32)[:, :, :, None, :], axis=1)  # [B, kvh, g, hd]
    return out.astype(dtype)[:, None]


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

    @nn.compact
    def __call__(self, x, cos, sin, mask, cache_kv=None, write_index=0):
        cfg = self.config
        attn_out, new_kv = Attention(cfg, self.dtype, name="attn")(
            RMSNorm(cfg.rms_norm_eps, self.dtype, name="input_norm")(x), cos, sin, mask, cache_kv, write_index
        )
        x = x + attn_out
        x = x + MLP(cfg, self.dtype, name="mlp")(RMSNorm(cfg.rms_norm_eps, self.dtype, name="post_attention_norm")(x))
        return x, new_kv
