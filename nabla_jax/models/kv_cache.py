"""The keys/values caches, one type per layout, and the named conversions between them.

- :class:`KVCache` (stacked, by slot): what :func:`~nabla_jax.models.decoder.forward` reads and writes; also each
  problem's frozen prefix cache (batch 1) in DTO.
- :class:`LayerCache` (one layer, heads-major): what decoding keeps, so single-query attention reads each (row, kv
  head) without a transpose (:data:`~nabla_jax.models.layers.HEADS_MAJOR`).
- :class:`SequenceKV` (rows first, by sequence position): what a rollout hands to the ∇-Reasoner's prefix cache.

No other module reorders a cache's axes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.models.config import DecoderConfig


class KVCache(NamedTuple):
    """Keys and values of every layer, ``[layers, B, S, kv_heads, head_dim]`` each, by buffer slot."""

    k: jax.Array
    v: jax.Array


class LayerCache(NamedTuple):
    """One layer's decode cache: keys ``[B, kv_heads, head_dim, S]``, values ``[B, kv_heads, S, head_dim]``."""

    k: jax.Array
    v: jax.Array


class SequenceKV(NamedTuple):
    """Keys and values by sequence position, rows first: ``[B, layers, S, kv_heads, head_dim]`` each (one row's,
    under ``vmap``: ``[layers, S, kv_heads, head_dim]``)."""

    k: jax.Array
    v: jax.Array


def init_cache(config: DecoderConfig, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
    shape = (config.num_layers, batch, max_len, config.num_kv_heads, config.head_dim)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def decode_caches(kv: KVCache, extra_slots: int) -> tuple[LayerCache, ...]:
    """``kv`` as one :class:`LayerCache` per layer with ``extra_slots`` empty slots after its ``S``."""
    k = jnp.pad(kv.k.transpose(0, 1, 3, 4, 2), ((0, 0),) * 4 + ((0, extra_slots),))
    v = jnp.pad(kv.v.transpose(0, 1, 3, 2, 4), ((0, 0),) * 3 + ((0, extra_slots), (0, 0)))
    return tuple(LayerCache(k[i], v[i]) for i in range(k.shape[0]))


def gather_sequence(caches: tuple[LayerCache, ...], slots: jax.Array) -> SequenceKV:
    """Buffer slots ``slots [B, J]`` of each row from per-layer decode caches, as a :class:`SequenceKV` of ``J``
    positions."""
    k = jnp.stack([jnp.take_along_axis(c.k, slots[:, None, None, :], axis=3) for c in caches], 1)  # [B, L, kvh, hd, J]
    v = jnp.stack([jnp.take_along_axis(c.v, slots[:, None, :, None], axis=2) for c in caches], 1)  # [B, L, kvh, J, hd]
    return SequenceKV(k.transpose(0, 1, 4, 2, 3), v.transpose(0, 1, 3, 2, 4))


def sequence_as_stacked(kv: SequenceKV) -> KVCache:
    """Rows' sequences ``[B, layers, S, ...]`` as a stacked cache ``[layers, B, S, ...]`` (slot = position)."""
    return KVCache(*(x.swapaxes(0, 1) for x in kv))


def row_as_prefix(kv: SequenceKV, like: KVCache) -> KVCache:
    """One row's sequence ``[layers, S, ...]`` as a batch-1 prefix cache ``[layers, 1, S, ...]`` of ``like``'s dtypes."""
    return KVCache(*(x[:, None].astype(c.dtype) for x, c in zip(kv, like, strict=True)))


def prefixes_as_stacked(prefixes: KVCache, slots: int) -> KVCache:
    """Rows' batch-1 prefix caches stacked over rows (``[B, layers, 1, S, ...]``) as one stacked cache of their
    first ``slots`` slots, ``[layers, B, slots, ...]``."""
    return KVCache(*(x[:, :, 0, :slots].swapaxes(0, 1) for x in prefixes))


def first_slots(kv: KVCache, slots: int) -> KVCache:
    """``kv`` cut to its first ``slots`` slots."""
    return KVCache(*(x[:, :, :slots] for x in kv))
