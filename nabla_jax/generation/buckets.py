"""Fixed shapes for a few compilations: buffers padded up to length buckets, batches up to row buckets, and the
one loop every batched caller shares (group by bucket, cut into chunks, pad the rows: :func:`chunks`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import NamedTuple

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


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple (at least one multiple), so nearby lengths share a compilation."""
    return max(multiple, -(-n // multiple) * multiple)


def bucket_rows(n: int, maximum: int) -> int:
    """Rows of a batch padded up to a power of two, at most ``maximum``."""
    size = 1
    while size < n:
        size *= 2
    return max(min(size, maximum), n)


MIN_QUEUE = 8


def queue_length(count: int) -> int:
    """The entries of a queue holding ``count`` real ones: the next power of two, at least ``MIN_QUEUE``, so calls
    with 1 to 8 prompts share one program. The count of real entries is traced and padding entries are never
    decoded, so the padding costs nothing; a queue is never shorter than its row slots (at most ``count``)."""
    return bucket_rows(max(count, MIN_QUEUE), 1 << 30)


def slot_rows(count: int, batch_size: int) -> int:
    """Row slots of a queue of ``count`` entries decoded at most ``batch_size`` at a time (a power of two)."""
    return bucket_rows(min(count, batch_size), batch_size)


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


def pad_ids(ids: Sequence[int], size: int, what: str) -> np.ndarray:
    """One id list right-padded with 0 to ``[size]`` int32; ValueError naming ``what`` when it does not fit."""
    ids = np.asarray(ids, np.int32).reshape(-1)
    if ids.size > size:
        raise ValueError(f"{what} has {ids.size} tokens, more than its buffer of {size}")
    return np.pad(ids, (0, size - ids.size))


class Chunk(NamedTuple):
    key: Hashable  # the bucket its members share
    members: list[int]  # indices of the real rows, in input order
    rows: list[int]  # members, padded by repeating the first one up to the chunk's row count


def chunks(keys: Sequence[Hashable], size: int, row_count: Callable[[int], int] | None = None) -> Iterator[Chunk]:
    """Indices ``0..len(keys)-1`` grouped by bucket key (buckets in sorted order, input order within one), cut into
    chunks of at most ``size`` members, each padded (by repeating its first member) to ``row_count(len)`` rows:
    power-of-two row counts by default. Padding rows are computed and dropped, so a row's result never depends on
    its chunk."""
    row_count = row_count or (lambda n: bucket_rows(n, size))
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    for key in sorted(groups):
        members = groups[key]
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            yield Chunk(key, chunk, chunk + [chunk[0]] * (row_count(len(chunk)) - len(chunk)))
