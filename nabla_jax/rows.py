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
    return jax.lax.cond(jnp.any(mask), lambda *a: fn(*a), _zeros_of(fn, *args), *args)


def _zeros_of(fn, *args):
    """A branch that skips ``fn``: it returns zeros shaped as ``fn(*args)``'s outputs."""
    shapes = jax.eval_shape(fn, *args)
    return lambda *_: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def when_any_fits(mask: jax.Array, need: jax.Array, sizes: tuple[int, ...], fn, *args):
    """:func:`when_any` with a size: ``fn(size, *args)`` for the smallest static ``size`` in ``sizes`` (ascending)
    that is at least ``need`` in every row of ``mask``; each size is one branch of a ``lax.switch``, decided once per
    batch. ``fn``'s outputs must not depend on the size in shape."""
    fitting = jnp.searchsorted(jnp.asarray(sizes), jnp.max(jnp.where(mask, need, 0)))
    branches = [_zeros_of(lambda *a: fn(sizes[-1], *a), *args)] + [lambda *a, size=size: fn(size, *a) for size in sizes]
    return jax.lax.switch(jnp.where(jnp.any(mask), 1 + fitting, 0), branches, *args)


def add_row_axis(tree):
    """One problem as a batch of one."""
    return jax.tree.map(lambda x: x[None], tree)


def drop_row_axis(tree):
    """The one row of a batch of one."""
    return jax.tree.map(lambda x: x[0], tree)


def when_any_rows(mask: jax.Array, fn, chunk: int, *args):
    """:func:`when_any` in chunks of ``chunk`` rows: the rows where ``mask`` is set are gathered first (in order),
    each chunk runs ``fn`` only if it holds one, and the outputs go back to their rows. The work then grows with the
    rows that need ``fn``, not with the batch. ``fn`` maps rows ``[C, ...]`` to outputs ``[C, ...]`` row by row;
    the outputs of rows whose mask is unset are unspecified (callers discard them)."""
    rows = mask.shape[0]
    if chunk >= rows:
        return when_any(mask, fn, *args)
    if rows % chunk:
        raise ValueError(f"{rows} rows do not split into chunks of {chunk}")
    order = jnp.argsort(~mask, stable=True)
    needs, gathered = mask[order], jax.tree.map(lambda x: x[order], args)
    parts = []
    for start in range(0, rows, chunk):
        part = jax.tree.map(lambda x: x[start : start + chunk], gathered)
        parts.append(when_any(needs[start : start + chunk], fn, *part))
    out = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
    inverse = jnp.argsort(order)
    return jax.tree.map(lambda x: x[inverse], out)


def compaction_chunk(rows: int) -> int:
    """Chunk size for :func:`when_any_rows`: a quarter of the batch from 8 rows on when 4 divides it (each chunk is
    compiled once more), else the whole batch."""
    return rows // 4 if rows >= 8 and rows % 4 == 0 else rows
