"""Tokenizer rules, in one place: the policy's chat prompt, the token ids around a response in a reward input, the
pad ids, and a response's ids in the reward model's vocabulary.

Every prompt is rendered as the official code does it: the tokenizer's chat template to text, then encoded with
``add_special_tokens=False`` (the template already holds any BOS). A reward model scores
``[template prefix] + response + [closing postfix]``: its template is rendered with :data:`SENTINEL` where the
response goes and split there, so soft tokens can be spliced in between two fixed id sequences. A reward input never
holds a system prompt. Details and rationale: docs/design-notes.md.
"""

from __future__ import annotations

import warnings

import numpy as np

SENTINEL = "@@NABLA_JAX_RESPONSE_SLOT@@"


def chat_messages(user: str, system: str | None = None) -> list[dict]:
    """``[system?, user]`` messages."""
    return ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]


def require_template(tokenizer, role: str) -> None:
    if tokenizer is None:
        raise ValueError(f"the {role} has no tokenizer; a chat template is needed")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the {role} tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template"
            + ("; pass chat=False (--no-chat) to use the raw text as the prompt" if role == "policy" else "")
        )


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


_WARNED_UNKNOWN: set[int] = set()


def warn_unknown(tokenizer, ids, text: str) -> None:
    """Warn, once per tokenizer, when ``text`` has characters the vocabulary lacks (they became its unknown token,
    silently otherwise: e.g. capitals for the testbed's character tokenizer)."""
    unk, token = getattr(tokenizer, "unk_token_id", None), getattr(tokenizer, "unk_token", None)
    if unk is None or id(tokenizer) in _WARNED_UNKNOWN or unk not in ids or (token and token in text):
        return
    _WARNED_UNKNOWN.add(id(tokenizer))
    warnings.warn(f"{text!r} has characters outside the tokenizer's vocabulary; they became {token or unk} "
                  "(said once per tokenizer)", stacklevel=3)


def chat_prompt_ids(tokenizer, prompt: str, system: str | None = None, role: str = "policy") -> list[int]:
    """Token ids of ``prompt`` as the only user message (after ``system`` if given), ready for the reply."""
    require_template(tokenizer, role)
    text = tokenizer.apply_chat_template(chat_messages(prompt, system), tokenize=False, add_generation_prompt=True)
    ids = encode(tokenizer, text)
    warn_unknown(tokenizer, ids, prompt if system is None else f"{system}\n{prompt}")
    return ids


def plain_prompt_ids(tokenizer, text: str) -> list[int]:
    """Token ids of raw text (no template), with the tokenizer's usual special tokens (e.g. a BOS)."""
    ids = list(tokenizer.encode(text))
    warn_unknown(tokenizer, ids, text)
    return ids


def split_at_sentinel(tokenizer, text: str, what: str) -> tuple[list[int], list[int]]:
    """The ids of ``text`` before and after the one :data:`SENTINEL` in it."""
    pieces = text.split(SENTINEL)
    if len(pieces) != 2:
        raise ValueError(
            f"the {what} of {getattr(tokenizer, 'name_or_path', '')!r} does not place the assistant response "
            f"exactly once (found {len(pieces) - 1} times); cannot split it around the response"
        )
    return encode(tokenizer, pieces[0]), encode(tokenizer, pieces[1])


def reward_template_ids(tokenizer, prompt: str, system: str | None = None) -> tuple[list[int], list[int]]:
    """``(prefix_ids, postfix_ids)``: a reward model's chat template before and after the assistant response."""
    require_template(tokenizer, "reward model")
    messages = chat_messages(prompt, system) + [{"role": "assistant", "content": SENTINEL}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    return split_at_sentinel(tokenizer, text, "reward chat template")


def reward_input_template(reward, prompt: str) -> tuple[list[int], list[int]]:
    """``(prefix_ids, postfix_ids)`` for a loaded reward model: its own ``template`` function when it has one (the
    judge and likelihood rewards of :mod:`nabla_jax.rewards`), else its tokenizer's chat template."""
    custom = getattr(reward, "template", None)
    if custom is not None:
        return custom(prompt, None)
    return reward_template_ids(reward.tokenizer, prompt, None)


def tokenizer_name(tokenizer) -> str:
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def pad_token_id(config, tokenizer=None) -> int:
    """The id written after a generated row ends: the tokenizer's pad, else the config's, else 0."""
    for value in (getattr(tokenizer, "pad_token_id", None), config.pad_token_id):
        if value is not None:
            return int(value)
    return 0


def reward_pad_id(reward_tokenizer, reward_config=None) -> int:
    """The reward model's pad id, which reward inputs are padded with and unknown policy tokens map to: its
    tokenizer's pad id, else its config's."""
    for candidate in (getattr(reward_tokenizer, "pad_token_id", None), getattr(reward_config, "pad_token_id", None)):
        if candidate is not None:
            return int(candidate)
    raise ValueError(
        f"reward tokenizer {tokenizer_name(reward_tokenizer)!r} has no pad token; vocabulary alignment needs one "
        "for policy tokens the reward model does not know"
    )


def to_reward_ids(reward_index, token_ids) -> list[int]:
    """Policy ids as reward-model ids, through the vocabulary alignment ``reward_index[policy id]``."""
    index = np.asarray(reward_index)
    return [int(index[t]) for t in token_ids]
