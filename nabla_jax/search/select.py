"""Which rows a step-level search keeps, for one problem's ``n`` rows: pure functions of the rows' step scores."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nabla_jax.search.config import SearchConfig


def prune(config: SearchConfig, last: jax.Array, selectable: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(source [N], alive [N])``: in each group of rows (one for beam search, one per dvts subtree), the ``keep``
    selectable rows with the highest step score (ties to the lower row), each copied into ``N / (groups * keep)``
    consecutive-modulo slots of its group; a group with no selectable row dies."""
    groups = config.groups
    width = config.n // groups
    scores = jnp.where(selectable, last, -jnp.inf).reshape(groups, width)
    order = jnp.argsort(-scores, axis=1, stable=True)[:, : config.keep]  # [G, K]
    kept = jnp.minimum(jnp.sum(selectable.reshape(groups, width), axis=1), config.keep)  # [G]
    slot = jnp.arange(width)[None] % jnp.maximum(kept, 1)[:, None]  # [G, W]
    source = jnp.take_along_axis(order, slot, axis=1) + (jnp.arange(groups) * width)[:, None]
    alive = jnp.broadcast_to((kept > 0)[:, None], (groups, width))
    return source.reshape(-1), alive.reshape(-1)


def resample(config: SearchConfig, last: jax.Array, key: jax.Array) -> jax.Array:
    """``source [N]``: particles drawn with weights ``softmax(last / pf_temperature)`` (multinomial); equal weights
    leave the particles as they are."""
    logits = last.astype(jnp.float32) / config.pf_temperature
    drawn = jax.random.categorical(key, logits, shape=logits.shape)
    return jnp.where(jnp.all(logits == logits[0]), jnp.arange(logits.shape[0]), drawn)


def set_aside(best, sequence: jax.Array, length: jax.Array, score: jax.Array, finished: jax.Array):
    """``best`` (per problem) replaced by the highest-reward row that ``finished [P, N]`` this step, where it
    scores higher (the first such row on ties)."""
    candidates = jnp.where(finished, score, -jnp.inf)
    row = jnp.argmax(candidates, axis=1)
    top = jnp.take_along_axis(candidates, row[:, None], axis=1)[:, 0]
    better = jnp.any(finished, axis=1) & (~best.found | (top > best.score))
    new_sequence = jnp.take_along_axis(sequence, row[:, None, None], axis=1)[:, 0]
    new_length = jnp.take_along_axis(length, row[:, None], axis=1)[:, 0]
    return best._replace(
        sequence=jnp.where(better[:, None], new_sequence, best.sequence),
        length=jnp.where(better, new_length, best.length),
        score=jnp.where(better, top, best.score),
        found=best.found | better,
    )
