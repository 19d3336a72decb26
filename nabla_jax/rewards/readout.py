"""Reading a reward out of the reward model's hidden states, one segment at a time.

A reward input may be run in pieces (DTO runs the frozen prefix once and the ahead chunk at every step), so each
piece's contribution is a small accumulator of its counted slots' values; accumulators merge in order and
:func:`finish` turns the merged one into the reward. The value of a counted slot:

- outcome: the score head at that slot (only the input's last slot is counted);
- process: the probability of label 1 from the two-layer head (Linear, ReLU, Linear to 2 labels);
- likelihood: the LM's log-probability of the slot's token given the slots before it, floored at ``clip``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.models import decoder
from nabla_jax.rewards.kinds import LIKELIHOOD, OUTCOME, PROCESS, RewardKind


class Accumulator(NamedTuple):
    total: jax.Array  # sum of counted values
    log_total: jax.Array  # sum of their logs (process: the log of the product of step probabilities)
    minimum: jax.Array
    count: jax.Array
    last: jax.Array  # the value of the last counted slot


def accumulate(values: jax.Array, counted: jax.Array) -> Accumulator:
    values = values.astype(jnp.float32)
    slots = jnp.arange(values.shape[0])
    last = jnp.max(jnp.where(counted, slots, -1))
    safe_log = jnp.log(jnp.where(counted, jnp.maximum(values, 1e-30), 1.0))
    return Accumulator(
        total=jnp.sum(jnp.where(counted, values, 0.0)),
        log_total=jnp.sum(safe_log),
        minimum=jnp.min(jnp.where(counted, values, jnp.inf)),
        count=jnp.sum(counted).astype(jnp.float32),
        last=jnp.where(last >= 0, values[jnp.maximum(last, 0)], 0.0),
    )


def merge(first: Accumulator, then: Accumulator) -> Accumulator:
    return Accumulator(
        first.total + then.total,
        first.log_total + then.log_total,
        jnp.minimum(first.minimum, then.minimum),
        first.count + then.count,
        jnp.where(then.count > 0, then.last, first.last),
    )


def finish(kind: RewardKind, acc: Accumulator) -> jax.Array:
    """The reward (0 when nothing was counted, e.g. an empty response)."""
    some = acc.count > 0
    if kind.name == OUTCOME:
        value = acc.last
    elif kind.name == LIKELIHOOD:
        value = acc.total / jnp.maximum(acc.count, 1.0)
    elif kind.aggregate == "min":
        value = acc.minimum
    elif kind.aggregate == "prod":
        value = jnp.exp(acc.log_total)
    elif kind.aggregate == "mean":
        value = acc.total / jnp.maximum(acc.count, 1.0)
    else:
        value = acc.last
    return jnp.where(some, value, 0.0)


def process_probs(config, params, hidden: jax.Array) -> jax.Array:
    """``[..., T]`` probability of label 1 from the PRM head."""
    head = params["score"]
    h = jnp.dot(hidden, head["hidden"]["kernel"], preferred_element_type=jnp.float32) + head["hidden"]["bias"]
    logits = jnp.dot(jax.nn.relu(h), head["out"]["kernel"].astype(jnp.float32)) + head["out"]["bias"]
    return jax.nn.softmax(logits, axis=-1)[..., 1]


def outcome_scores(config, params, hidden: jax.Array) -> jax.Array:
    return jnp.dot(hidden, params["score"]["kernel"], preferred_element_type=jnp.float32)[..., 0]


def token_logprobs(kind: RewardKind, config, params, previous_hidden: jax.Array, targets: jax.Array, index=None) -> jax.Array:
    """``[T]``: log p(target_t | hidden_{t-1}) floored at ``kind.clip``; ``targets`` are reward ids ``[T]`` or
    one-hots (soft tokens: the value is their dot product with the log-probabilities), over the reward vocabulary,
    or over the policy's when ``index`` maps policy ids to reward ids. Without ``kind.target_gradient`` the one-hots
    are constants here: their gradient comes only through ``previous_hidden``."""
    if not kind.target_gradient:
        targets = jax.lax.stop_gradient(targets)
    logp = jax.nn.log_softmax(decoder.lm_logits(config, params, previous_hidden), axis=-1)
    if index is not None and targets.ndim == 2:
        logp = jnp.take(logp, index, axis=-1)
    if targets.ndim == 1:
        value = jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
    else:
        value = jnp.sum(targets * logp, axis=-1)
    return value if kind.clip is None else jnp.maximum(value, kind.clip)


def slot_values(kind: RewardKind, config, params, hidden, previous_hidden=None, targets=None, index=None) -> jax.Array:
    """``[T]`` the readout value at every slot of ``hidden [T, d]``. Likelihood needs ``previous_hidden [T, d]``
    (the hidden state before each slot) and ``targets`` (each slot's token; see :func:`token_logprobs`)."""
    if kind.name == LIKELIHOOD:
        return token_logprobs(kind, config, params, previous_hidden, targets, index)
    if kind.name == PROCESS:
        return process_probs(config, params, hidden)
    return outcome_scores(config, params, hidden)


def shifted(hidden: jax.Array, before_first: jax.Array) -> jax.Array:
    """``[T, d]``: the hidden state before each slot (``before_first`` for slot 0)."""
    return jnp.concatenate([before_first[None], hidden[:-1]], axis=0)


def input_values(kind: RewardKind, config, params, ids: jax.Array, valid: jax.Array) -> jax.Array:
    """``[L]`` readout values of one full reward input ``ids [L]`` (one forward pass)."""
    positions = jnp.maximum(jnp.cumsum(valid) - 1, 0)
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids[None]), positions[None], valid[None])
    hidden = hidden[0]
    previous = shifted(hidden, hidden[0]) if kind.name == LIKELIHOOD else None
    return slot_values(kind, config, params, hidden, previous, ids)


def score_input(kind: RewardKind, config, params, ids: jax.Array, valid: jax.Array, counted: jax.Array) -> jax.Array:
    """The reward of one full reward input: per-slot values (per-step probabilities of a PRM, per-token
    log-probabilities of a likelihood reward) reduced over the counted slots."""
    return finish(kind, accumulate(input_values(kind, config, params, ids, valid), counted))
