"""Reward-guided token decoding (ARGS) over a batch of problems: ``(init, step)`` over a fixed-shape state, run by
``lax.while_loop`` inside one ``jit``.

The policy decodes with a KV cache; at each token its ``k`` most likely tokens are each appended to the response
and scored by the reward model (one pass each), and the token with the highest ``logit + weight * reward`` is
taken (the more likely one on ties). Weight 0 is greedy decoding. Invariant: a problem's row reads nothing of
another's, so results do not depend on the batch.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.dto.models import ModelPair
from nabla_jax.models import decoder
from nabla_jax.models.flops import forward_flops
from nabla_jax.reasoner.problem import NablaProblem, response_reward
from nabla_jax.search.config import GuidedConfig


class GuidedState(NamedTuple):
    sequence: jax.Array  # [P, S] int32: prompt then response
    length: jax.Array  # [P] int32: response tokens
    done: jax.Array  # [P] bool
    cache: decoder.KVCache  # the policy's keys/values by buffer slot
    logits: jax.Array  # [P, V] float32: the policy's logits for the next token
    flops: jax.Array  # [P] float32
    reward_calls: jax.Array  # [P] int32
    nonfinite: jax.Array  # [P] int32: tokens chosen from non-finite logits


def guided_init(models: ModelPair, problems: NablaProblem) -> GuidedState:
    """The prompts' prefill: their keys/values and the logits of the first response token."""
    ids, prompt_len = problems.prompt_ids, problems.prompt_len
    valid = jnp.arange(ids.shape[1])[None] < prompt_len[:, None]
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    hidden, cache = decoder.forward(models.lm_config, models.lm_params, decoder.embed(models.lm_params, ids),
                                    positions, valid)
    last = jnp.take_along_axis(hidden, (prompt_len - 1)[:, None, None], axis=1)[:, 0]
    flops = jax.vmap(lambda n: forward_flops(models.lm_config, n, 0))(prompt_len).astype(jnp.float32)
    p = ids.shape[0]
    return GuidedState(ids.astype(jnp.int32), jnp.zeros((p,), jnp.int32), jnp.zeros((p,), bool), cache,
                       decoder.lm_logits(models.lm_config, models.lm_params, last).astype(jnp.float32), flops,
                       jnp.zeros((p,), jnp.int32), jnp.zeros((p,), jnp.int32))


def candidate_rewards(models, config: GuidedConfig, rm_pad: int, problems, sequence, length, candidates):
    """``[P, k]`` the reward of each response with each candidate token appended."""
    def one(problem, seq, n, token):
        return response_reward(models, problem, seq.at[problem.prompt_len + n].set(token), n + 1, rm_pad,
                               config.max_new_tokens)
    per_problem = lambda problem, seq, n, tokens: jax.vmap(lambda t: one(problem, seq, n, t))(tokens)  # noqa: E731
    return jax.vmap(per_problem)(problems, sequence, length, candidates)


def guided_step(models: ModelPair, config: GuidedConfig, end_ids: tuple, rm_pad: int, problems: NablaProblem,
                state: GuidedState) -> GuidedState:
    active = ~state.done
    top, candidates = jax.lax.top_k(state.logits, config.k)  # [P, k], the most likely first
    if config.weight:
        rewards = candidate_rewards(models, config, rm_pad, problems, state.sequence, state.length, candidates)
        total = top + config.weight * rewards
    else:
        total = top
    token = jnp.take_along_axis(candidates, jnp.argmax(total, axis=1)[:, None], axis=1)[:, 0]
    slot = problems.prompt_len + state.length
    rows = jnp.arange(token.shape[0])
    sequence = state.sequence.at[rows, slot].set(jnp.where(active, token, state.sequence[rows, slot]))
    length = state.length + active
    broken = ~jnp.all(jnp.isfinite(state.logits), axis=1)
    ended = jnp.isin(token, jnp.asarray(end_ids or (-1,), jnp.int32)) | (length >= config.max_new_tokens) | broken
    # the chosen token's keys/values, and the logits of the one after it (a decode step)
    valid = jnp.arange(sequence.shape[1])[None] <= slot[:, None]
    hidden, cache = decoder.forward(models.lm_config, models.lm_params,
                                    decoder.embed(models.lm_params, token[:, None]), slot[:, None], valid,
                                    state.cache, slot)
    logits = decoder.lm_logits(models.lm_config, models.lm_params, hidden[:, 0]).astype(jnp.float32)
    reward_slots = jax.vmap(lambda problem, n: models.reward_kind.input_slots(
        problem.rm_prefix_len, n, problem.rm_postfix_len))(problems, length)
    reward_flops = jax.vmap(lambda n: forward_flops(models.rm_config, n, 0))(reward_slots) if config.weight else 0.0
    step_flops = jax.vmap(lambda n: forward_flops(models.lm_config, 1, n))(slot)
    done_after = state.done | (active & ended)
    # a token that ends the response needs no decode step after it
    flops = state.flops + jnp.where(active, jnp.where(ended, 0.0, step_flops) + config.k * reward_flops, 0.0)
    calls = config.k if config.weight else 0
    return GuidedState(sequence, length, done_after, cache, jnp.where(active[:, None], logits, state.logits),
                       flops.astype(jnp.float32), state.reward_calls + active * calls,
                       state.nonfinite + (active & broken))


@functools.partial(jax.jit, static_argnames=("config", "end_ids", "rm_pad"))
def guided_batch(models: ModelPair, config: GuidedConfig, end_ids: tuple, rm_pad: int,
                 problems: NablaProblem) -> GuidedState:
    """Decode every problem of ``problems [P]`` to the end in one compiled program."""
    step = functools.partial(guided_step, models, config, end_ids, rm_pad, problems)
    return jax.lax.while_loop(lambda s: jnp.any(~s.done), step, guided_init(models, problems))
