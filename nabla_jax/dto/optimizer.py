"""The official optimiser: Adam (decoupled weight decay, 0 by default) with a clipped cosine learning rate.

``lr(t) = learning_rate * max(min_lr_ratio, 0.5 * (1 + cos(pi * t / max_iters)))`` for t = 0, 1, ...: clipped at
the floor, not rescaled onto it, no warmup, and advancing on cached steps too, as the official
``lr_scheduler.step()`` does.

``dto_dtype="bfloat16"`` reproduces the official runs: the variables and both Adam moments are bfloat16, and each
update rounds where torch's Adam rounds on bfloat16 tensors (where, and what that loses: docs/design-notes.md).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import optax

from nabla_jax.dto.config import DTOConfig


def lr_schedule(config: DTOConfig):
    def schedule(count):
        progress = count.astype(jnp.float32) / config.max_iters
        factor = jnp.maximum(config.min_lr_ratio, 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
        return config.learning_rate * factor

    return schedule


def make_optimizer(config: DTOConfig) -> optax.GradientTransformation:
    """torch.optim.Adam's defaults (b1 0.9, b2 0.999, eps 1e-8, eps outside the square root)."""
    if config.dto_dtype == "bfloat16":
        return low_precision_adam(lr_schedule(config), jnp.bfloat16, weight_decay=config.weight_decay)
    return optax.adamw(lr_schedule(config), b1=0.9, b2=0.999, eps=1e-8, weight_decay=config.weight_decay)


class LowPrecisionAdamState(NamedTuple):
    count: jnp.ndarray
    mu: jnp.ndarray
    nu: jnp.ndarray


def low_precision_adam(schedule, dtype, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0) -> optax.GradientTransformation:
    """Adam on ``dtype`` variables, rounding as torch's single-tensor Adam does on tensors of that dtype (each op
    computed in float32, its result rounded). Updates come out in float32 so that ``apply_updates`` lands exactly on
    the rounded new value. ``weight_decay`` is decoupled, as :func:`optax.adamw`."""
    f32 = jnp.float32

    def init(params):
        zeros = jnp.zeros_like(params, dtype)
        return LowPrecisionAdamState(jnp.zeros((), jnp.int32), zeros, zeros)

    def update(grads, state, params):
        rnd = lambda x: x.astype(dtype).astype(f32)  # noqa: E731
        g = rnd(grads.astype(f32))
        p = params.astype(f32)
        lr = schedule(state.count)
        if weight_decay:
            p = rnd(p * (1.0 - lr * weight_decay))
        mu = rnd(state.mu.astype(f32) + (1.0 - b1) * (g - state.mu.astype(f32)))  # lerp_
        nu = rnd(rnd(state.nu.astype(f32) * b2) + (1.0 - b2) * g * g)  # mul_, then addcmul_
        step = (state.count + 1).astype(f32)
        denom = rnd(rnd(rnd(jnp.sqrt(nu)) / jnp.sqrt(1.0 - b2**step)) + eps)  # sqrt, div, add_
        new = rnd(p - (lr / (1.0 - b1**step)) * mu / denom)  # addcdiv_
        return new - params.astype(f32), LowPrecisionAdamState(state.count + 1, mu.astype(dtype), nu.astype(dtype))

    return optax.GradientTransformation(init, update)
