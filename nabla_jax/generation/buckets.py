"""Fixed shapes for a few compilations: prompt buffers padded up to length buckets, batches up to row buckets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nabla_jax.models.config import DecoderConfig

MIN_BUCKET = 32


def bucket_length(n: int, minimum: int = MIN_BUCKET, maximum: int | None = None) -> int:
    """The smallest power of two >= max(n, minimum), capped at ``maximum`` (never below n)."""
    size = max(int(minimum), 1)
    while size < n:
        size *= 2
    if maximum is not None:
        size = max(min(size, int(maximum)), n)
    return size


def bucket_rows(n: int, maximum: int) -> int:
    """Rows of a batch padded up to a power of two, at most ``maximum``."""
    size = 1
    while size < n:
        size *= 2
    return max(min(size, maximum), n)


def check_lengths(config: DecoderConfig, prompt_len: int, max_new_tokens: int, where: str = "prompt") -> None:
    """ValueError unless 1 <= prompt_len and prompt_len + max_new_tokens fits the model's context."""
    if prompt_len < 1:
        raise ValueError(f"{where} is empty (0 tokens); generation needs at least one prompt token")
    if prompt_len + max_new_tokens > config.max_position_embeddings:
        raise ValueError(
            f"{where} is too long: {prompt_len} prompt tokens + max_new_tokens {max_new_tokens} = "
            f"{prompt_len + max_new_tokens} > the model's context of {config.max_position_embeddings} positions"
        )


def pad_prompts(prompts: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token lists into ``[B, length]`` int32 and return it with their lengths ``[B]``."""
    buffer = np.full((len(prompts), length), pad_id, np.int32)
    for row, ids in enumerate(prompts):
        buffer[row, : len(ids)] = ids
    return buffer, np.asarray([len(ids) for ids in prompts], np.int32)
