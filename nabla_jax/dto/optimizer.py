"""The official optimiser: Adam (decoupled weight decay, 0 by default) with a clipped cosine learning rate.

``lr(t) = learning_rate * max(min_lr_ratio, 0.5 * (1 + cos(pi * t / max_iters)))`` for t = 0, 1, ...: the cosine is
clipped at the floor, not rescaled onto it, and there is no warmup. optax counts every ``update`` call, so the
schedule advances on cached steps too, as the official ``lr_scheduler.step()`` does.
"""

from __future__ import annotations

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
    return optax.adamw(lr_schedule(config), b1=0.9, b2=0.999, eps=1e-8, weight_decay=config.weight_decay)
