"""Scoring responses by id: the per-response reward the ∇-Reasoner's acceptance test computes inside its loop,
and the same function batched for best-of-N and for users."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.generation.buckets import bucket_length, chunks, pad_prompts
from nabla_jax.rewards import inputs, readout
from nabla_jax.rewards.kinds import RewardKind


def response_reward(kind: RewardKind, config, params, prefix, prefix_len, response, response_len, postfix, postfix_len, pad: int):
    """The reward of one response (reward ids, EOS kept) between a template prefix and postfix: one buffer built by
    :func:`~nabla_jax.rewards.inputs.reward_input`, one forward pass, the kind's readout."""
    built = inputs.reward_input(kind, prefix, prefix_len, response, response_len, postfix, postfix_len, pad)
    return readout.score_input(kind, config, params, built.ids, built.valid, built.counted)


def response_last_and_reward(kind: RewardKind, config, params, prefix, prefix_len, response, response_len, postfix,
                             postfix_len, pad: int):
    """``(the value read at the response's last step, its reward)`` from one forward pass: for a PRM the last step's
    probability and the aggregate over all steps (what a step-level search selects by, and what it answers by)."""
    built = inputs.reward_input(kind, prefix, prefix_len, response, response_len, postfix, postfix_len, pad)
    acc = readout.accumulate(readout.input_values(kind, config, params, built.ids, built.valid), built.counted)
    return acc.last, readout.finish(kind, acc)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _batch_rewards(kind, config, pad, params, prefix, prefix_len, response, response_len, postfix, postfix_len):
    one = lambda *row: response_reward(kind, config, params, *row, pad)
    return jax.vmap(one)(prefix, prefix_len, response, response_len, postfix, postfix_len)


def score_batch(reward, rows: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]], pad: int,
                max_rows: int = 64, place: Callable | None = None, row_count: Callable | None = None,
                where: Callable[[int], str] = lambda r: f"row {r}") -> np.ndarray:
    """Rewards of ``(prefix, response, postfix)`` reward-id rows, in order. Rows are grouped by length bucket and
    padded to power-of-two row counts (``row_count`` overrides, e.g. to divide over devices); ``place`` puts each
    batch's arrays on devices; ``where(r)`` names row r in errors."""
    limit = reward.config.max_position_embeddings
    shapes = []
    for r, (prefix, response, postfix) in enumerate(rows):
        total = reward.kind.input_slots(len(prefix), len(response), len(postfix))
        if total > limit:
            raise ValueError(
                f"{where(r)}: the reward input has {total} tokens, more than the reward model's context of {limit}"
            )
        shapes.append((bucket_length(len(prefix)), bucket_length(len(response)),
                       bucket_length(max(len(postfix), 1), minimum=8)))
    scores = np.zeros(len(rows), np.float32)
    for shape, chunk, padded in chunks(shapes, max_rows, row_count):
        arrays = []
        for part, size in enumerate(shape):
            arrays += pad_prompts([rows[r][part] for r in padded], size, pad)
        if place is not None:
            arrays = place(*arrays)
        out = np.asarray(jax.device_get(_batch_rewards(reward.kind, reward.config, pad, reward.params, *arrays)))
        scores[chunk] = out[: len(chunk)]
    return scores


def response_step_scores(reward, prefix: Sequence[int], response: Sequence[int], postfix: Sequence[int], pad: int = 0) -> list[float]:
    """The values a reward reads for one response (reward ids), in order: a PRM's per-step probabilities, a
    likelihood reward's per-token log-probabilities, an outcome classifier's one score."""
    kind = reward.kind
    arrays = [jnp.asarray(list(part) or [pad], jnp.int32) for part in (prefix, response, postfix)]
    built = inputs.reward_input(kind, arrays[0], len(prefix), arrays[1], len(response), arrays[2], len(postfix), pad)
    values = readout.input_values(kind, reward.config, reward.params, built.ids, built.valid)
    values, counted = jax.device_get((values, built.counted))
    return [float(v) for v, c in zip(values, counted) if c]
