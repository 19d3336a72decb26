"""Rotary position embeddings: inverse frequencies (default, linear, llama3 scaling) and their application."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from nabla_jax.models.config import DecoderConfig


def inverse_frequencies(config: DecoderConfig) -> np.ndarray:
    """Per-pair inverse frequencies ``[head_dim // 2]`` in float32, computed as transformers does."""
    dim = config.head_dim
    exponents = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    inv_freq = (np.float32(1.0) / (np.float32(config.rope_theta) ** exponents)).astype(np.float32)
    if config.rope_type == "linear":
        (factor,) = config.rope_scaling
        inv_freq = inv_freq / np.float32(factor)
    elif config.rope_type == "llama3":
        factor, low_freq_factor, high_freq_factor, old_context = config.rope_scaling
        low_freq_wavelen = old_context / low_freq_factor
        high_freq_wavelen = old_context / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        inv_freq = np.where(medium, smoothed, scaled).astype(np.float32)
    return inv_freq


def rotary_angles(config: DecoderConfig, positions: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos and sin, each ``[..., T, head_dim]`` float32, for integer ``positions [..., T]``."""
    inv_freq = jnp.asarray(inverse_frequencies(config))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """Rotate ``x [B, T, heads, head_dim]`` by the half-split convention; cos/sin are ``[B, T, head_dim]``."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos = cos[:, :, None, :].astype(x.dtype)
    sin = sin[:, :, None, :].astype(x.dtype)
    return x * cos + rotated * sin
