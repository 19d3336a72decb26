"""Per-row selection in batched loops: every batched state here is a pytree whose leaves have a leading row axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def where_rows(mask: jax.Array, new, old):
    """``new`` in the rows where ``mask [B]`` is set, ``old`` elsewhere, leaf by leaf (leaves ``[B, ...]``)."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o), new, old)
