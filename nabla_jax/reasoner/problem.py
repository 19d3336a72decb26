"""One problem's constant inputs as fixed-shape buffers: the chat-templated prompt and the reward template."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class NablaProblem(NamedTuple):
    prompt_ids: jax.Array  # [S] policy ids: the chat-templated prompt, right-padded (S = prompt bucket + N)
    prompt_len: jax.Array  # () int32
    rm_prefix_ids: jax.Array  # [R0] reward ids of the reward template before the response
    rm_prefix_len: jax.Array  # () int32
    rm_postfix_ids: jax.Array  # [Q] reward ids of the template's closing tokens
    rm_postfix_len: jax.Array  # () int32
    key: jax.Array  # the problem's PRNG key, from (seed, problem index)


def pad_to(ids, size: int, what: str) -> np.ndarray:
    ids = np.asarray(ids, np.int32).reshape(-1)
    if ids.size > size:
        raise ValueError(f"{what} has {ids.size} tokens, more than its buffer of {size}")
    return np.pad(ids, (0, size - ids.size))


def make_problem(prompt_ids, rm_prefix_ids, rm_postfix_ids, sizes: tuple[int, int, int], key) -> NablaProblem:
    s, r, q = sizes
    return NablaProblem(
        prompt_ids=jnp.asarray(pad_to(prompt_ids, s, "prompt")),
        prompt_len=jnp.asarray(len(prompt_ids), jnp.int32),
        rm_prefix_ids=jnp.asarray(pad_to(rm_prefix_ids, r, "reward template prefix")),
        rm_prefix_len=jnp.asarray(len(rm_prefix_ids), jnp.int32),
        rm_postfix_ids=jnp.asarray(pad_to(rm_postfix_ids, q, "reward template postfix")),
        rm_postfix_len=jnp.asarray(len(rm_postfix_ids), jnp.int32),
        key=key,
    )


def response_reward_ids(problem: NablaProblem, sequence: jax.Array, response_len, reward_index, rm_pad: int):
    """The reward model's input ``[R0 + N + Q]`` for the response ``sequence[prompt_len : prompt_len +
    response_len]``: template prefix, the response mapped to reward ids, the closing tokens; and its length.

    ``N = S - len(prompt buffer part)`` is taken as ``S`` here for simplicity of shapes (the response never exceeds
    the sequence buffer)."""
    r0, q = problem.rm_prefix_ids.shape[0], problem.rm_postfix_ids.shape[0]
    n = sequence.shape[0]
    j = jnp.arange(r0 + n + q)
    after_prefix = j - problem.rm_prefix_len
    after_response = after_prefix - response_len
    prefix_tok = problem.rm_prefix_ids[jnp.clip(j, 0, r0 - 1)]
    response_tok = reward_index[sequence[jnp.clip(problem.prompt_len + after_prefix, 0, n - 1)]]
    postfix_tok = problem.rm_postfix_ids[jnp.clip(after_response, 0, max(q - 1, 0))] if q else jnp.zeros_like(j)
    ids = jnp.where(
        j < problem.rm_prefix_len,
        prefix_tok,
        jnp.where(after_prefix < response_len, response_tok, jnp.where(after_response < problem.rm_postfix_len, postfix_tok, rm_pad)),
    )
    length = problem.rm_prefix_len + response_len + problem.rm_postfix_len
    return ids.astype(jnp.int32), length


def committed_reward_prefix(problem: NablaProblem, sequence: jax.Array, past_len, reward_index, rm_pad: int):
    """The reward-side DTO prefix: template prefix + committed response tokens (mapped), ``[R0 + S]`` and length."""
    r0 = problem.rm_prefix_ids.shape[0]
    n = sequence.shape[0]
    j = jnp.arange(r0 + n)
    after_prefix = j - problem.rm_prefix_len
    committed = past_len - problem.prompt_len
    prefix_tok = problem.rm_prefix_ids[jnp.clip(j, 0, r0 - 1)]
    response_tok = reward_index[sequence[jnp.clip(problem.prompt_len + after_prefix, 0, n - 1)]]
    ids = jnp.where(j < problem.rm_prefix_len, prefix_tok, jnp.where(after_prefix < committed, response_tok, rm_pad))
    return ids.astype(jnp.int32), problem.rm_prefix_len + committed
