"""The straight-through one-hot that lets a discrete token carry a gradient.

Forward: ``onehot(argmax z)`` exactly. Backward: the Jacobian of ``softmax(z / tau)``.
This is ``hard + soft - stop_gradient(soft)``; the addition is arranged so that the forward value is the
exact one-hot in every floating-point format (``soft - soft`` is exactly zero).
"""

from __future__ import annotations

import jax

from nabla_jax.generation.sampling import first_argmax


def straight_through_onehot(
    z: jax.Array,
    tau: float = 1.0,
    gumbel_key: jax.Array | None = None,
) -> jax.Array:
    """Straight-through one-hot of ``z`` over its last axis.

    ``gumbel_key`` adds Gumbel(0, 1) noise to ``z`` before both the argmax and the softmax (off by default, as
    in the official code). The result has the dtype of ``z``.
    """
    if tau <= 0:
        raise ValueError(f"straight-through temperature tau must be > 0, got {tau}")
    if gumbel_key is not None:
        z = z + jax.random.gumbel(gumbel_key, z.shape, z.dtype)
    soft = jax.nn.softmax(z / tau, axis=-1)
    hard = jax.nn.one_hot(first_argmax(z), z.shape[-1], dtype=z.dtype)
    return hard + (soft - jax.lax.stop_gradient(soft))
