"""One problem's constant inputs as fixed-shape buffers: the chat-templated prompt and the reward template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.generation.buckets import bucket_length, bucket_rows, pad_ids, queue_length, round_up
from nabla_jax.rewards import scoring
from nabla_jax.rewards.inputs import RewardInput, reward_input
from nabla_jax.sharding import params_mesh, shard_batch
from nabla_jax.templates import chat_prompt_ids, reward_input_template


class NablaProblem(NamedTuple):
    prompt_ids: jax.Array  # [S] policy ids: the chat-templated prompt, right-padded (S = prompt bucket + N)
    prompt_len: jax.Array  # () int32
    rm_prefix_ids: jax.Array  # [R0] reward ids of the reward template before the response
    rm_prefix_len: jax.Array  # () int32
    rm_postfix_ids: jax.Array  # [Q] reward ids of the template's closing tokens
    rm_postfix_len: jax.Array  # () int32
    key: jax.Array  # the problem's PRNG key, from (seed, problem index)


# what each of a problem's three id buffers holds, for errors
PARTS = ("prompt", "reward template prefix", "reward template postfix")


def make_nabla_problem(prompt_ids, rm_prefix_ids, rm_postfix_ids, sizes: tuple[int, int, int], key) -> NablaProblem:
    s, r, q = sizes
    return NablaProblem(
        prompt_ids=jnp.asarray(pad_ids(prompt_ids, s, PARTS[0])),
        prompt_len=jnp.asarray(len(prompt_ids), jnp.int32),
        rm_prefix_ids=jnp.asarray(pad_ids(rm_prefix_ids, r, PARTS[1])),
        rm_prefix_len=jnp.asarray(len(rm_prefix_ids), jnp.int32),
        rm_postfix_ids=jnp.asarray(pad_ids(rm_postfix_ids, q, PARTS[2])),
        rm_postfix_len=jnp.asarray(len(rm_postfix_ids), jnp.int32),
        key=key,
    )


def checked_request(prompts, batch_size, problem_ids) -> tuple[list[str], list[int]]:
    """``(prompts, problem_ids)`` of a decoding call as lists (one prompt may be a string; ids default to the
    prompts' indices), the batch size and the ids' count checked."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError("no prompts given")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
    problem_ids = list(range(len(prompts))) if problem_ids is None else [int(i) for i in problem_ids]
    if len(problem_ids) != len(prompts):
        raise ValueError(f"{len(problem_ids)} problem_ids for {len(prompts)} prompts")
    return prompts, problem_ids


def encode_problems(policy, reward, prompts: Sequence[str], max_new_tokens: int, system: str | None = None):
    """Per prompt: (policy prompt ids, reward template prefix ids, reward template postfix ids), each checked
    against both models' contexts with ``max_new_tokens`` of response."""
    encoded = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"prompt {i} must be a non-empty string")
        ids = chat_prompt_ids(policy.tokenizer, prompt, system)
        limit = policy.config.max_position_embeddings
        if len(ids) + max_new_tokens > limit:
            raise ValueError(
                f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} it exceeds the "
                f"policy's context of {limit} positions"
            )
        prefix, postfix = reward_input_template(reward, prompt)
        reward_limit = reward.config.max_position_embeddings
        if reward.kind.input_slots(len(prefix), max_new_tokens, len(postfix)) > reward_limit:
            raise ValueError(
                f"prompt {i}: the reward template ({len(prefix) + len(postfix)} tokens) plus max_new_tokens="
                f"{max_new_tokens} exceeds the reward model's context of {reward_limit} positions"
            )
        encoded.append((ids, prefix, postfix))
    return encoded


def stack_problems(models, encoded, problem_ids, base_key, max_new_tokens: int, queue: bool = True) -> NablaProblem:
    """The problems stacked ``[Q]``, padded to shared sizes; Q is :func:`queue_length` for a queue (repeats of the
    first problem fill it; they are never decoded), else the next power of two (a fixed batch decodes every row).
    ``encoded`` comes from :func:`encode_problems`; problem i's key is ``fold_in(base_key, problem_ids[i])``. The
    buffers are built on the host and sent once (a row at a time through jnp cost milliseconds per call)."""
    sizes = (
        bucket_length(max(len(ids) for ids, _, _ in encoded)) + max_new_tokens,
        round_up(max(len(prefix) for _, prefix, _ in encoded), 32),
        round_up(max(len(postfix) for _, _, postfix in encoded), 8),
    )
    length = queue_length(len(encoded)) if queue else bucket_rows(len(encoded), 1 << 30)
    rows = list(encoded) + [encoded[0]] * (length - len(encoded))
    ids = list(problem_ids) + [problem_ids[0]] * (length - len(encoded))
    columns = [np.stack([pad_ids(row[part], size, PARTS[part]) for row in rows]) for part, size in enumerate(sizes)]
    lengths = [np.asarray([len(row[part]) for row in rows], np.int32) for part in range(3)]
    keys = _problem_keys(base_key, jnp.asarray(ids, jnp.int32))
    batch = NablaProblem(columns[0], lengths[0], columns[1], lengths[1], columns[2], lengths[2], keys)
    return shard_batch(jax.tree.map(jnp.asarray, batch), params_mesh(models.lm_params))


@jax.jit
def _problem_keys(base_key, problem_ids):
    return jax.vmap(lambda i: jax.random.fold_in(base_key, i))(problem_ids)


def response_ids(problem: NablaProblem, sequence: jax.Array, reward_index, slots: int) -> jax.Array:
    """``[slots]`` the response part of ``sequence`` (from ``prompt_len`` on) as reward ids. ``slots`` is the
    longest response (``max_new_tokens``): reward inputs built from it hold no slot a response cannot reach, where
    the whole sequence buffer (prompt bucket included) padded every reward pass. Slots past the buffer repeat its
    last token (they lie beyond any response length)."""
    n = sequence.shape[0]
    return reward_index[sequence[jnp.clip(problem.prompt_len + jnp.arange(min(slots, n)), 0, n - 1)]]


def response_reward(models, problem: NablaProblem, sequence: jax.Array, length, rm_pad: int,
                    slots: int) -> jax.Array:
    """The reward of the response ``sequence[prompt_len : prompt_len + length]`` (EOS kept, ``length <= slots``)
    under the reward template: :func:`nabla_jax.rewards.scoring.response_reward`, the function best-of-N scoring
    batches."""
    return scoring.response_reward(
        models.reward_kind, models.rm_config, models.rm_params, problem.rm_prefix_ids, problem.rm_prefix_len,
        response_ids(problem, sequence, models.reward_index, slots), length, problem.rm_postfix_ids,
        problem.rm_postfix_len, rm_pad,
    )


def response_step_reward(models, problem: NablaProblem, sequence: jax.Array, length, rm_pad: int, slots: int):
    """``(last step's value, reward)`` of the response ``sequence[prompt_len : prompt_len + length]``, at most
    ``slots`` tokens (:func:`nabla_jax.rewards.scoring.response_last_and_reward`)."""
    return scoring.response_last_and_reward(
        models.reward_kind, models.rm_config, models.rm_params, problem.rm_prefix_ids, problem.rm_prefix_len,
        response_ids(problem, sequence, models.reward_index, slots), length, problem.rm_postfix_ids,
        problem.rm_postfix_len, rm_pad,
    )


def committed_reward_prefix(models, problem: NablaProblem, sequence: jax.Array, past_len, rm_pad: int,
                            slots: int) -> RewardInput:
    """The reward-side DTO prefix: template prefix + committed response tokens (a response that goes on; at most
    ``slots`` of them, the longest response)."""
    empty = jnp.zeros((0,), jnp.int32)
    committed = past_len - problem.prompt_len
    return reward_input(
        models.reward_kind, problem.rm_prefix_ids, problem.rm_prefix_len,
        response_ids(problem, sequence, models.reward_index, slots), committed, empty, 0, rm_pad, final=False,
    )
