"""Adam on logits through the straight-through one-hot, with and without gradient caching (TC6).

The forward pass of ``L(ST(z))`` sees only the hard one-hots, so ``g = dL/dy`` depends on ``z`` only through
``argmax z``. Gradient caching (Alg. 4; the official code's ``grad_caching``) stores ``g`` after a full step and,
while no argmax changes, reuses it: the step then needs only the softmax's vector-Jacobian product,
``dL/dz = vjp(ST, z)(g)``. This is exact, not an approximation, which TC6 checks bit for bit.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class CachedDescentState(NamedTuple):
    logits: jax.Array
    opt_state: optax.OptState
    cached_grad: jax.Array  # dL/dy at onehot(cached_argmax)
    cached_argmax: jax.Array  # -1 until the first step fills the cache
    num_full: jax.Array  # steps that recomputed dL/dy
    num_argmax_changes: jax.Array


def onehot_gradient(loss: Callable, argmax: jax.Array, vocab: int, dtype) -> jax.Array:
    """``dL/dy`` at the corner ``onehot(argmax)``."""
    return jax.grad(loss)(jax.nn.one_hot(argmax, vocab, dtype=dtype))


def cached_descent(loss: Callable, straight_through: Callable, optimiser: optax.GradientTransformation):
    """``(init, step)`` for Adam on ``loss(straight_through(z))``.

    ``step(state, use_cache=True, invalidate=True)``: ``use_cache=False`` recomputes ``dL/dy`` at every step
    (the reference); ``invalidate=False`` keeps a stale cache after an argmax change (a deliberately broken
    variant). The flags may be traced, so one compiled step serves all variants: bit-for-bit comparisons then
    test the caching, not two compilations of the same arithmetic.
    """
    def init(logits):
        zero = jnp.zeros((), jnp.int32)
        no_argmax = jnp.full(logits.shape[:-1], -1, jnp.argmax(logits, axis=-1).dtype)
        return CachedDescentState(logits, optimiser.init(logits), jnp.zeros_like(logits), no_argmax, zero, zero)

    def step(state: CachedDescentState, use_cache=True, invalidate=True) -> CachedDescentState:
        argmax = jnp.argmax(state.logits, axis=-1)
        empty = jnp.any(state.cached_argmax < 0)
        changed = jnp.any(argmax != state.cached_argmax) & ~empty
        recompute = empty | (changed & invalidate) | jnp.logical_not(use_cache)
        grad_y = jax.lax.cond(recompute,
                              lambda: onehot_gradient(loss, argmax, state.logits.shape[-1], state.logits.dtype),
                              lambda: state.cached_grad)
        _, vjp = jax.vjp(straight_through, state.logits)
        (grad_z,) = vjp(grad_y)
        updates, opt_state = optimiser.update(grad_z, state.opt_state, state.logits)
        return CachedDescentState(
            optax.apply_updates(state.logits, updates), opt_state, grad_y,
            jnp.where(recompute, argmax, state.cached_argmax),
            state.num_full + recompute, state.num_argmax_changes + changed,
        )

    return init, step


def autodiff_descent(loss: Callable, straight_through: Callable, optimiser: optax.GradientTransformation):
    """``(init, step)`` for the plain reference: ``jax.grad`` of ``loss(straight_through(z))`` at every step."""
    def init(logits):
        return logits, optimiser.init(logits)

    def step(state):
        logits, opt_state = state
        grad_z = jax.grad(lambda z: loss(straight_through(z)))(logits)
        updates, opt_state = optimiser.update(grad_z, opt_state, logits)
        return optax.apply_updates(logits, updates), opt_state

    return init, step
