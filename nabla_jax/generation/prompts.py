"""End, pad and stop tokens through the policy's tokenizer, as the official ∇-Reasoner code does it (the prompts
themselves: :mod:`nabla_jax.templates`)."""

from __future__ import annotations

from collections.abc import Sequence

from nabla_jax.models.config import DecoderConfig


def eos_token_ids(config: DecoderConfig, tokenizer=None) -> tuple[int, ...]:
    """The model config's EOS ids plus the tokenizer's EOS id."""
    ids = set(config.eos_token_ids)
    eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
    if eos is not None:
        ids.add(int(eos))
    return tuple(sorted(ids))


def stop_token_sequences(tokenizer, stop: Sequence[str | Sequence[int]] | str | None) -> tuple[tuple[int, ...], ...]:
    """Stop strings or token-id lists as token-id tuples.

    Strings are encoded without special tokens, as the official code does; matching is on tokens, so a string
    stops generation only when the model produces that same tokenization of it."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    sequences = []
    for item in stop:
        if isinstance(item, str):
            if tokenizer is None:
                raise ValueError("stop strings need a tokenizer; pass token-id sequences instead")
            ids = tuple(tokenizer.encode(item, add_special_tokens=False))
        else:
            ids = tuple(int(t) for t in item)
        if not ids:
            raise ValueError(f"stop sequence {item!r} is empty")
        sequences.append(ids)
    return tuple(sequences)
