"""Token ids for the testbed: the char tokenizer, and the chat-template renderings of prompts and responses.

The tokenizer is character-level, so a text's ids are a table lookup; the fixed template pieces are taken from
``apply_chat_template`` once, so the ids equal what the tokenizer itself produces (a test checks it).
"""

from __future__ import annotations

import functools

import numpy as np

from nabla_jax.char_tokenizer import build_char_tokenizer
from nabla_jax.testbed.task import ALPHABET

PAD_ID = 0
EOS_ID = 2
# Fixed padded lengths, so every batch of a kind has one shape (one compilation): the longest prompt is 39 ids
# (19 template + 20 text), the longest solution 34 characters + EOS, the longest sampled response 48 ids.
POLICY_LENGTH = 80
MAX_NEW_TOKENS = 48
REWARD_LENGTH = 96


@functools.lru_cache(maxsize=None)
def tokenizer():
    return build_char_tokenizer(ALPHABET)


@functools.lru_cache(maxsize=None)
def _char_ids() -> dict[str, int]:
    vocab = tokenizer().get_vocab()
    return {char: vocab[char] for char in ALPHABET}


@functools.lru_cache(maxsize=None)
def _template_pieces() -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(before the user message, between it and the response, after the response) for [user, assistant]."""
    tok = tokenizer()
    marker_user, marker_response = "\x00U\x00", "\x00R\x00"
    text = tok.apply_chat_template(
        [{"role": "user", "content": marker_user}, {"role": "assistant", "content": marker_response}], tokenize=False
    )
    head, rest = text.split(marker_user)
    middle, tail = rest.split(marker_response)
    prompt_text = tok.apply_chat_template([{"role": "user", "content": marker_user}], tokenize=False, add_generation_prompt=True)
    assert prompt_text == head + marker_user + middle, "the generation prompt must be the assistant header"

    def encode(s: str) -> tuple[int, ...]:
        return tuple(tok.encode(s, add_special_tokens=False))

    return encode(head), encode(middle), encode(tail)


def text_ids(text: str) -> list[int]:
    table = _char_ids()
    return [table.get(c, 3) for c in text]


def prompt_ids(prompt: str) -> list[int]:
    """The policy's input: the chat template for [user: prompt] with the generation prompt."""
    head, middle, _ = _template_pieces()
    return [*head, *text_ids(prompt), *middle]


def reward_ids(prompt: str, response: str) -> list[int]:
    """The reward model's input: the chat template for [user: prompt, assistant: response]."""
    head, middle, tail = _template_pieces()
    return [*head, *text_ids(prompt), *middle, *text_ids(response), *tail]


def decode(ids) -> str:
    """Text of response ids, stopping at the first end-of-turn or padding token."""
    inverse = {i: c for c, i in _char_ids().items()}
    out = []
    for i in ids:
        i = int(i)
        if i in (EOS_ID, PAD_ID):
            break
        out.append(inverse.get(i, ""))
    return "".join(out)


def pad_right(rows: list[list[int]], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [N, L], valid [N, L])`` right-padded with PAD_ID; ``length`` defaults to the longest row."""
    length = length or max(len(r) for r in rows)
    ids = np.full((len(rows), length), PAD_ID, np.int32)
    valid = np.zeros((len(rows), length), bool)
    for i, row in enumerate(rows):
        if len(row) > length:
            raise ValueError(f"row of {len(row)} tokens does not fit {length}")
        ids[i, : len(row)] = row
        valid[i, : len(row)] = True
    return ids, valid
