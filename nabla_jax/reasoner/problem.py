"""One problem's constant inputs as fixed-shape buffers: the chat-templated prompt and the reward template."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.generation.buckets import pad_ids
from nabla_jax.rewards import scoring
from nabla_jax.rewards.inputs import RewardInput, reward_input


class NablaProblem(NamedTuple):
    prompt_ids: jax.Array  # [S] policy ids: the chat-templated prompt, right-padded (S = prompt bucket + N)
    prompt_len: jax.Array  # () int32
    rm_prefix_ids: jax.Array  # [R0] reward ids of the reward template before the response
    rm_prefix_len: jax.Array  # () int32
    rm_postfix_ids: jax.Array  # [Q] reward ids of the template's closing tokens
    rm_postfix_len: jax.Array  # () int32
    key: jax.Array  # the problem's PRNG key, from (seed, problem index)


def make_nabla_problem(prompt_ids, rm_prefix_ids, rm_postfix_ids, sizes: tuple[int, int, int], key) -> NablaProblem:
    s, r, q = sizes
    return NablaProblem(
        prompt_ids=jnp.asarray(pad_ids(prompt_ids, s, "prompt")),
        prompt_len=jnp.asarray(len(prompt_ids), jnp.int32),
        rm_prefix_ids=jnp.asarray(pad_ids(rm_prefix_ids, r, "reward template prefix")),
        rm_prefix_len=jnp.asarray(len(rm_prefix_ids), jnp.int32),
        rm_postfix_ids=jnp.asarray(pad_ids(rm_postfix_ids, q, "reward template postfix")),
        rm_postfix_len=jnp.asarray(len(rm_postfix_ids), jnp.int32),
        key=key,
    )


def response_ids(problem: NablaProblem, sequence: jax.Array, reward_index) -> jax.Array:
    """``[S]`` the response part of ``sequence`` (from ``prompt_len`` on) as reward ids; slots past the buffer
    repeat its last token (they lie beyond any response length)."""
    n = sequence.shape[0]
    return reward_index[sequence[jnp.clip(problem.prompt_len + jnp.arange(n), 0, n - 1)]]


def response_reward(models, problem: NablaProblem, sequence: jax.Array, length, rm_pad: int) -> jax.Array:
    """The reward of the response ``sequence[prompt_len : prompt_len + length]`` (EOS kept) under the reward
    template: :func:`nabla_jax.rewards.scoring.response_reward`, the function best-of-N scoring batches."""
    return scoring.response_reward(
        models.reward_kind, models.rm_config, models.rm_params, problem.rm_prefix_ids, problem.rm_prefix_len,
        response_ids(problem, sequence, models.reward_index), length, problem.rm_postfix_ids, problem.rm_postfix_len,
        rm_pad,
    )


def committed_reward_prefix(models, problem: NablaProblem, sequence: jax.Array, past_len, rm_pad: int) -> RewardInput:
    """The reward-side DTO prefix: template prefix + committed response tokens (a response that goes on)."""
    empty = jnp.zeros((0,), jnp.int32)
    committed = past_len - problem.prompt_len
    return reward_input(
        models.reward_kind, problem.rm_prefix_ids, problem.rm_prefix_len,
        response_ids(problem, sequence, models.reward_index), committed, empty, 0, rm_pad, final=False,
    )
