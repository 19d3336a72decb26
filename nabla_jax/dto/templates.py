"""Token ids around the response: the policy's generation prompt and the reward model's template.

The reward model scores ``[template prefix] + response + [closing postfix]``. We render the reward tokenizer's chat
template for ``[user: prompt, assistant: SENTINEL]`` and split the text at the sentinel, so soft tokens can be
spliced in between two fixed id sequences (the prefix and, e.g., ``<|im_end|>\\n``).
"""

from __future__ import annotations

SENTINEL = "@@NABLA_JAX_RESPONSE_SLOT@@"


def _require_template(tokenizer, role: str) -> None:
    if tokenizer is None:
        raise ValueError(f"the {role} has no tokenizer; a chat template is needed")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the {role} tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template")


def _messages(prompt: str, system_prompt: str | None) -> list[dict]:
    messages = [{"role": "user", "content": prompt}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def policy_prompt_ids(tokenizer, prompt: str, system_prompt: str | None = None) -> list[int]:
    """The policy's chat-templated prompt with the generation prompt (the assistant header) appended."""
    _require_template(tokenizer, "policy")
    text = tokenizer.apply_chat_template(
        _messages(prompt, system_prompt), tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer.encode(text, add_special_tokens=False))


def reward_template_ids(tokenizer, prompt: str, system_prompt: str | None = None) -> tuple[list[int], list[int]]:
    """``(prefix_ids, postfix_ids)``: the reward template's ids before and after the response."""
    _require_template(tokenizer, "reward model")
    messages = _messages(prompt, system_prompt) + [{"role": "assistant", "content": SENTINEL}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    pieces = text.split(SENTINEL)
    if len(pieces) != 2:
        raise ValueError(
            f"the reward chat template of {getattr(tokenizer, 'name_or_path', '')!r} does not place the assistant "
            f"response exactly once (found {len(pieces) - 1} times); cannot split it around the response"
        )
    prefix, postfix = pieces
    return (
        list(tokenizer.encode(prefix, add_special_tokens=False)),
        list(tokenizer.encode(postfix, add_special_tokens=False)) if postfix else [],
    )


def reward_input_template(reward, prompt: str) -> tuple[list[int], list[int]]:
    """``(prefix_ids, postfix_ids)`` for a loaded reward model: its own ``template`` function when it has one (the
    judge and likelihood rewards of :mod:`nabla_jax.rewards`), else its tokenizer's chat template
    (:func:`reward_template_ids`). As in the official code, a reward input never holds a system prompt: the system
    message instructs the policy, and every method scores a response under the same template."""
    custom = getattr(reward, "template", None)
    if custom is not None:
        return custom(prompt, None)
    return reward_template_ids(reward.tokenizer, prompt, None)
