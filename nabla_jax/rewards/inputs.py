"""The one function that builds a reward model's input from (template, response ids), on fixed-shape buffers.

Every user of a reward (best-of-N scoring, the ∇-Reasoner's acceptance test, DTO's frozen prefix and its soft
ahead chunk) builds its input here, so they all score the same sequence for the same response:

    [template prefix] + response (with a separator after each step for a separator PRM) + [template postfix]

The response keeps its final EOS when it has one (the official rule). Shapes are static: the response region has
``kind.response_slots(N)`` slots, and separators are placed by a scatter map, not a Python loop.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.rewards.kinds import LIKELIHOOD, OUTCOME, RewardKind


class RewardInput(NamedTuple):
    ids: jax.Array  # [L] int32 reward ids, padded with the reward pad id
    valid: jax.Array  # [L] bool: real slots (a contiguous run from slot 0)
    response: jax.Array  # [L] bool: slots of the response region (its tokens and inserted separators)
    source: jax.Array  # [L] int32: the response token a slot holds, -1 for template slots and separators
    counted: jax.Array  # [L] bool: the slots whose readout enters the reward (see counted_slots)
    length: jax.Array  # () int32: real slots


def step_ends(kind: RewardKind, ids: jax.Array, length, final: bool) -> jax.Array:
    """``[N]`` bool: the response tokens that end a step (a listed step-end id, or the last token of a final
    response)."""
    index = jnp.arange(ids.shape[0])
    ends = jnp.isin(ids, jnp.asarray(kind.step_end_ids, jnp.int32)) if kind.step_end_ids else jnp.zeros_like(index, bool)
    if final:
        ends = ends | (index == length - 1)
    return ends & (index < length)


def _response_region(kind: RewardKind, ids: jax.Array, length, final: bool):
    """``(ids [M], source [M], length)``: the response, with separators inserted after step ends when the kind asks."""
    n = ids.shape[0]
    index = jnp.arange(n, dtype=jnp.int32)
    if not kind.inserts_separators:
        return ids, jnp.where(index < length, index, -1), length
    ends = step_ends(kind, ids, length, final).astype(jnp.int32)
    before = jnp.cumsum(ends) - ends  # separators inserted before token i
    dest = jnp.where(index < length, index + before, 2 * n)  # out of range: dropped
    out = jnp.full((2 * n,), kind.separator_id, jnp.int32).at[dest].set(ids, mode="drop")
    source = jnp.full((2 * n,), -1, jnp.int32).at[dest].set(index, mode="drop")
    return out, source, length + jnp.sum(ends)


def counted_slots(kind: RewardKind, ids, valid, response, source, final: bool) -> jax.Array:
    """The slots read into the reward: the last real slot (outcome, final inputs only), every response token
    (likelihood), each inserted separator or step-end token (process)."""
    slots = jnp.arange(ids.shape[0])
    last = jnp.max(jnp.where(valid, slots, -1))
    if kind.name == OUTCOME:
        return (slots == last) & final
    if kind.name == LIKELIHOOD:
        return response & (source >= 0)
    if kind.inserts_separators:
        return response & (source < 0)
    last_response = jnp.max(jnp.where(response, slots, -1))
    listed = jnp.isin(ids, jnp.asarray(kind.step_end_ids, jnp.int32)) if kind.step_end_ids else jnp.zeros_like(response)
    return response & (listed | ((slots == last_response) & final))


def reward_input(
    kind: RewardKind, prefix, prefix_len, response, response_len, postfix, postfix_len, pad: int, final: bool = True
) -> RewardInput:
    """Splice ``prefix[:prefix_len] + response region + postfix[:postfix_len]`` into one right-padded buffer of
    ``len(prefix) + kind.response_slots(len(response)) + len(postfix)`` slots. ``response`` holds reward ids.
    ``final`` False builds a response that goes on (DTO's committed prefix): its last token does not end a step."""
    middle, middle_source, middle_len = _response_region(kind, jnp.asarray(response, jnp.int32), response_len, final)
    r, m, q = prefix.shape[0], middle.shape[0], postfix.shape[0]
    j = jnp.arange(r + m + q)
    in_middle = j - prefix_len
    in_postfix = in_middle - middle_len
    take = lambda buf, k: buf[jnp.clip(k, 0, max(buf.shape[0] - 1, 0))] if buf.shape[0] else jnp.full_like(k, pad)
    is_prefix = j < prefix_len
    is_middle = ~is_prefix & (in_middle < middle_len)
    is_postfix = ~is_prefix & ~is_middle & (in_postfix < postfix_len)
    ids = jnp.where(is_prefix, take(prefix, j), jnp.where(is_middle, take(middle, in_middle), jnp.where(is_postfix, take(postfix, in_postfix), pad)))
    source = jnp.where(is_middle, take(middle_source, in_middle), -1)
    valid = is_prefix | is_middle | is_postfix
    ids = ids.astype(jnp.int32)
    counted = counted_slots(kind, ids, valid, is_middle, source, final)
    return RewardInput(ids, valid, is_middle, source.astype(jnp.int32), counted, prefix_len + middle_len + postfix_len)


def prefix_input(kind: RewardKind, template_prefix, committed) -> tuple[list[int], list[bool]]:
    """Host lists ``(ids, counted)`` of a reward input that goes on after ``committed`` (reward ids): DTO's frozen
    reward prefix, built by :func:`reward_input` with ``final=False`` and no postfix."""
    as_buffer = lambda ids: jnp.asarray(list(ids) or [0], jnp.int32)
    built = reward_input(
        kind, as_buffer(template_prefix), len(template_prefix), as_buffer(committed), len(committed),
        jnp.zeros((0,), jnp.int32), 0, pad=0, final=False,
    )
    n = int(built.length)
    ids, counted = jax.device_get((built.ids[:n], built.counted[:n]))
    return [int(i) for i in ids], [bool(c) for c in counted]
