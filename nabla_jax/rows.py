"""Per-row selection in batched loops: every batched state here is a pytree whose leaves have a leading row axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def where_rows(mask: jax.Array, new, old):
    """``new`` in the rows where ``mask [B]`` is set, ``old`` elsewhere, leaf by leaf (leaves ``[B, ...]``)."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o), new, old)


def when_any(mask: jax.Array, fn, *args):
    """``fn(*args)`` if any row of ``mask`` is set, else zeros of the same structure (nothing runs): under ``vmap`` a
    per-row ``lax.cond`` would run both branches, so a batched loop decides once per batch."""
    shapes = jax.eval_shape(fn, *args)
    zeros = lambda *_: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # noqa: E731
    return jax.lax.cond(jnp.any(mask), lambda *a: fn(*a), zeros, *args)


def add_row_axis(tree):
    """One problem as a batch of one."""
    return jax.tree.map(lambda x: x[None], tree)


def drop_row_axis(tree):
    """The one row of a batch of one."""
    return jax.tree.map(lambda x: x[0], tree)
