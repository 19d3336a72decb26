"""The decoder as pure functions over a params pytree.

params = {
    "embed": {"embedding": [V, d]},
    "layers": <one DecoderLayer's params, every leaf stacked along a leading [num_layers] axis>,
    "final_norm": {"scale": [d]},
    "lm_head": {"kernel": [d, V]},        # causal LMs with untied embeddings only
    "score": {"kernel": [d, num_labels]}, # sequence classifiers only
}

The layers run under ``lax.scan`` so compile time does not grow with depth. Entry points take embeddings, not
ids, because DTO feeds soft one-hots times the embedding matrix.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from nabla_jax.models.config import DecoderConfig
from nabla_jax.models.kv_cache import KVCache, LayerCache
from nabla_jax.models.layers import HEADS_MAJOR, INIT, DecoderLayer, RMSNorm
from nabla_jax.models.rope import rotary_angles


def params_dtype(params: dict) -> jnp.dtype:
    return params["embed"]["embedding"].dtype


def init_params(config: DecoderConfig, key: jax.Array, dtype=jnp.float32) -> dict:
    """Random params (normal, std 0.02; norms at 1) with the checkpoint's structure."""
    k_embed, k_layers, k_head = jax.random.split(key, 3)
    d = config.hidden_size
    dummy = jnp.zeros((1, 1, d), dtype)
    cos = sin = jnp.zeros((1, 1, config.head_dim), jnp.float32)
    mask = jnp.ones((1, 1, 1), bool)
    layer = DecoderLayer(config, dtype)
    layers = jax.vmap(lambda k: layer.init(k, dummy, cos, sin, mask)["params"])(
        jax.random.split(k_layers, config.num_layers)
    )
    params = {
        "embed": {"embedding": INIT(k_embed, (config.vocab_size, d), dtype)},
        "layers": layers,
        "final_norm": {"scale": jnp.ones((d,), dtype)},
    }
    if config.is_classifier:
        params["score"] = {"kernel": INIT(k_head, (d, config.num_labels), dtype)}
    elif config.is_process_reward:
        k_hidden, k_out = jax.random.split(k_head)
        params["score"] = {
            "hidden": {"kernel": INIT(k_hidden, (d, d), dtype), "bias": jnp.zeros((d,), dtype)},
            "out": {"kernel": INIT(k_out, (d, 2), dtype), "bias": jnp.zeros((2,), dtype)},
        }
    elif not config.tie_word_embeddings:
        params["lm_head"] = {"kernel": INIT(k_head, (d, config.vocab_size), dtype)}
    return params


def param_shapes(config: DecoderConfig, dtype=jnp.float32) -> dict:
    """The params pytree as ``jax.ShapeDtypeStruct`` leaves, without allocating anything."""
    return jax.eval_shape(lambda key: init_params(config, key, dtype), jax.random.key(0))


def count_params(tree) -> int:
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(tree))


def embed(params: dict, ids: jax.Array) -> jax.Array:
    return jnp.take(params["embed"]["embedding"], ids, axis=0)


def embedding_matrix(params: dict) -> jax.Array:
    return params["embed"]["embedding"]


def attention_mask(kv_valid: jax.Array, length: int, write_index) -> jax.Array:
    """``[B, T, S]``: query t (in buffer slot write_index + t) sees valid slots at or before its own;
    ``write_index`` is shared by the batch (a scalar) or per row (``[B]``)."""
    slots = jnp.arange(kv_valid.shape[1])
    query_slots = jnp.expand_dims(write_index, -1) + jnp.arange(length)  # [T] or [B, T]
    causal = slots <= query_slots[..., None]
    return causal & kv_valid[:, None, :]


def forward(
    config: DecoderConfig,
    params: dict,
    embeds: jax.Array,
    positions: jax.Array,
    kv_valid: jax.Array,
    cache: KVCache | None = None,
    write_index=0,
) -> tuple[jax.Array, KVCache]:
    """Run the layers and the final norm.

    embeds ``[B, T, d]``; positions ``[B, T]`` (rotary positions); kv_valid ``[B, S]`` marks the buffer slots that
    hold real tokens: without a cache S = T and it is the padding mask of this chunk; with a cache S is the buffer
    length and it must already mark this chunk's slots ``[write_index, write_index + T)``.
    Returns the hidden states after the final norm ``[B, T, d]`` (the "latents") and the keys/values of this
    call (the updated cache, or this chunk's own keys/values when no cache was given).
    """
    dtype = params_dtype(params)
    x = embeds.astype(dtype)
    cos, sin = rotary_angles(config, positions)
    mask = attention_mask(kv_valid, x.shape[1], write_index)
    layer = DecoderLayer(config, dtype)

    def run_layer(h, scanned):
        layer_params, cache_kv = scanned
        h, new_kv = layer.apply({"params": layer_params}, h, cos, sin, mask, cache_kv, write_index)
        return h, new_kv

    cache_kv = None if cache is None else (cache.k, cache.v)
    x, (keys, values) = jax.lax.scan(run_layer, x, (params["layers"], cache_kv))
    hidden = RMSNorm(config.rms_norm_eps, dtype).apply({"params": params["final_norm"]}, x)
    return hidden, KVCache(keys, values)


def output_matrix(config: DecoderConfig, params: dict) -> jax.Array:
    """The LM head as ``[d, V]`` (the transposed embedding when tied)."""
    if config.tie_word_embeddings:
        return params["embed"]["embedding"].T
    return params["lm_head"]["kernel"]


def lm_logits(config: DecoderConfig, params: dict, hidden: jax.Array) -> jax.Array:
    """float32 logits ``[..., V]`` from final hidden states."""
    return jnp.dot(hidden, output_matrix(config, params), preferred_element_type=jnp.float32)


def last_valid_index(mask: jax.Array) -> jax.Array:
    """Index of the rightmost True in each row of ``mask [B, T]`` (0 for an all-False row)."""
    positions = jnp.arange(mask.shape[-1])
    return jnp.max(jnp.where(mask, positions, 0), axis=-1)


def score(config: DecoderConfig, params: dict, hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Sequence-classification scores ``[B, num_labels]`` float32 at each row's last non-padding token."""
    last = last_valid_index(mask)
    pooled = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    return jnp.dot(pooled, params["score"]["kernel"], preferred_element_type=jnp.float32)


def split_layers(params: dict) -> tuple[dict, ...]:
    """The stacked layer params as one tree per layer. A decode loop built with them reads each layer's own buffers:
    slicing a layer out of the stack at every step copies its kernels on XLA CPU (docs/performance-log.md)."""
    count = jax.tree_util.tree_leaves(params["layers"])[0].shape[0]
    return tuple(jax.tree.map(lambda x, i=i: x[i], params["layers"]) for i in range(count))


def forward_layers(
    config: DecoderConfig,
    params: dict,
    layers: tuple[dict, ...],
    embeds: jax.Array,
    positions: jax.Array,
    kv_valid: jax.Array,
    caches: tuple[LayerCache, ...],
    write_index,
) -> tuple[jax.Array, tuple[LayerCache, ...]]:
    """:func:`forward` with a cache, over per-layer params (:func:`split_layers`) and per-layer decode caches
    (:class:`~nabla_jax.models.kv_cache.LayerCache`), the layers unrolled: each layer updates its own cache
    buffer in place, and single-query attention reads it without transposing it."""
    dtype = params_dtype(params)
    x = embeds.astype(dtype)
    cos, sin = rotary_angles(config, positions)
    mask = attention_mask(kv_valid, x.shape[1], write_index)
    layer = DecoderLayer(config, dtype, HEADS_MAJOR)
    updated = []
    for layer_params, cache in zip(layers, caches, strict=True):
        x, (k, v) = layer.apply({"params": layer_params}, x, cos, sin, mask, (cache.k, cache.v), write_index)
        updated.append(LayerCache(k, v))
    hidden = RMSNorm(config.rms_norm_eps, dtype).apply({"params": params["final_norm"]}, x)
    return hidden, tuple(updated)
