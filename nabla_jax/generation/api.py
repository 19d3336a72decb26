"""``generate``: text (or token-id) prompts in, sampled continuations out, by continuous batching
(:func:`~nabla_jax.generation.queue.queue_rollouts`).

Prompts are grouped by length bucket (each prompt's own); each bucket is one device-side queue that ``batch_size``
row slots decode, a row taking the next prompt as soon as its continuation ends. Queues are padded to power-of-two
lengths, so a long run compiles once per (bucket, queue length, rows). Prompt i is sampled with
``fold_in(key(seed), i)``: its output depends only on its text, its index and the settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.generation.buckets import check_lengths, queue_length
from nabla_jax.generation.prompts import eos_token_ids, stop_token_sequences
from nabla_jax.generation.queue import batch_rollouts, queue_rollouts
from nabla_jax.generation.rollouts import FINISH_NAMES, RolloutSpec
from nabla_jax.models.generation_config import GenerationDefaults
from nabla_jax.generation.sampling import SamplingConfig
from nabla_jax.sharding import params_mesh, shard_batch
from nabla_jax.seeds import seed_key
from nabla_jax.templates import chat_prompt_ids, pad_token_id, plain_prompt_ids


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    prompt_ids: list[int]
    token_ids: list[int]  # generated ids, including the EOS / stop tokens that ended the row
    text: str | None  # token_ids decoded with special tokens skipped (None without a tokenizer)
    finish_reason: str  # "eos" | "stop" | "length" | "nonfinite" (NaN/inf logits ended the row)


def _prompt_list(prompts) -> list:
    if isinstance(prompts, str) or (isinstance(prompts, (np.ndarray, jax.Array)) and np.ndim(prompts) == 1):
        return [prompts]
    prompts = list(prompts)
    if prompts and all(isinstance(t, (int, np.integer)) for t in prompts):
        return [prompts]  # one prompt given as a flat list of token ids
    return prompts


def encode_prompts(policy, prompts, system: str | None = None, chat: bool = True) -> list[list[int]]:
    """Token ids per prompt: strings through the chat template (or plain encoding when ``chat=False``);
    token-id sequences are taken as they are."""
    encoded = []
    prompts = _prompt_list(prompts)
    if not prompts:
        raise ValueError("no prompts given")
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError(f"prompt {i} is an empty string")
            if policy.tokenizer is None:
                raise ValueError(f"{policy.source or 'the policy'} has no tokenizer; pass token ids instead of text")
            if chat:
                ids = chat_prompt_ids(policy.tokenizer, prompt, system)
            else:
                ids = plain_prompt_ids(policy.tokenizer, prompt)
        else:
            array = np.asarray(prompt)
            if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
                raise ValueError(f"prompt {i} must be a string or a flat sequence of token ids")
            ids = [int(t) for t in array]
        encoded.append(ids)
    return encoded


def generate(
    policy,
    prompts: str | Sequence[str | Sequence[int]],
    max_new_tokens: int = 256,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    stop: Sequence[str | Sequence[int]] | str | None = None,
    system: str | None = None,
    chat: bool = True,
    batch_size: int = 8,
    repetition_penalty: float | None = None,
    continuous: bool = True,
) -> list[GenerationResult]:
    """Sample continuations of ``prompts`` (a string, or a list of strings / token-id lists) with ``policy``.

    temperature 0 is greedy; top_k 0, top_p 1.0 and repetition_penalty 1.0 are off (see
    :mod:`nabla_jax.generation.sampling`). A sampling setting left None comes from the checkpoint's
    ``generation_config.json`` when it has one, else from these defaults: temperature 1, top-k off, top-p off, no
    repetition penalty. Rows end at the policy's EOS tokens, at a ``stop`` sequence (strings or token ids, matched
    on tokens) or after ``max_new_tokens``. ``continuous=False`` decodes fixed batches of ``batch_size`` instead of
    a queue (the same outputs; faster when every continuation has about the same length, since the queue's refills
    prefill a few rows at a time). Returns one :class:`GenerationResult` per prompt, in order."""
    sampling = sampling_from_defaults(policy, temperature, top_k, top_p, repetition_penalty)
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
    if int(max_new_tokens) != max_new_tokens or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens}")
    config, tokenizer = policy.config, policy.tokenizer
    prompt_ids = encode_prompts(policy, prompts, system, chat)
    for i, ids in enumerate(prompt_ids):
        check_lengths(config, len(ids), max_new_tokens, where=f"prompt {i}")
        if min(ids) < 0 or max(ids) >= config.vocab_size:
            raise ValueError(f"prompt {i} has a token id outside [0, {config.vocab_size})")
    pad = pad_token_id(config, tokenizer)
    stops = stop_token_sequences(tokenizer, stop)
    spec = RolloutSpec(max_new_tokens, sampling, eos_token_ids(config, tokenizer), stops, pad)

    # prompt i's key is fold_in(key(seed), i); the array is queue-length long, so calls with 1 to 8 prompts share it
    indices = jnp.arange(queue_length(len(prompt_ids)), dtype=jnp.uint32)
    keys = jax.vmap(lambda i: jax.random.fold_in(seed_key(seed), i))(indices)
    mesh = params_mesh(policy.params)
    place = lambda *arrays: shard_batch(arrays, mesh)  # noqa: E731
    decode = queue_rollouts if continuous else batch_rollouts
    outputs = decode(config, policy.params, spec, prompt_ids, keys, batch_size, place=place)
    results = []
    for ids, (tokens, finish) in zip(prompt_ids, outputs):
        text = tokenizer.decode(tokens, skip_special_tokens=True) if tokenizer is not None else None
        results.append(GenerationResult(ids, tokens, text, FINISH_NAMES[finish]))
    return results


def sampling_from_defaults(policy, temperature=None, top_k=None, top_p=None, repetition_penalty=None) -> SamplingConfig:
    """A :class:`SamplingConfig` from the given settings, the policy's generation config, then the library's."""
    defaults = getattr(policy, "generation", None) or GenerationDefaults()
    return SamplingConfig(
        defaults.pick("temperature", temperature, 1.0),
        defaults.pick("top_k", top_k, 0),
        defaults.pick("top_p", top_p, 1.0),
        defaults.pick("repetition_penalty", repetition_penalty, 1.0),
    )
