"""Reward models by name: a sequence-classifier checkpoint, or ``judge:POLICY``, a causal LM asked to verify.

The judge reward is a causal LM's own log-odds of "Yes" against "No" after a verification question::

    user:      Problem: {problem}\n\nProposed answer: {response}\n\nIs the proposed answer correct? Answer Yes or No.
    assistant: <- the score is read here: logit("Yes") - logit("No") of the next token

It is built as a sequence classifier on the LM's own trunk whose one-label score head is the difference of the
LM-head rows of "Yes" and "No", so it is differentiable through soft tokens like any reward model, shares the
policy's vocabulary, and needs no training. It is only as good a verifier as the LM: a 135M model such as SmolLM2
answers such questions barely above chance, so treat it as a way to exercise the pipeline on real pretrained
weights, not as a reward that makes answers correct.
"""

from __future__ import annotations

import functools

from nabla_jax.dto.templates import SENTINEL
from nabla_jax.loading import Reward, load_policy, load_reward
from nabla_jax.models import decoder
from nabla_jax.models.config import SEQUENCE_CLASSIFICATION

JUDGE_PREFIX = "judge:"
JUDGE_QUESTION = "Is the proposed answer correct? Answer Yes or No."


def _single_token(tokenizer, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"judge reward: {text!r} is {len(ids)} tokens for this tokenizer; it must be one token")
    return ids[0]


def judge_template(tokenizer, prompt: str, system: str | None = None) -> tuple[list[int], list[int]]:
    """Ids before and after the response in the judge's input (its chat template, generation prompt appended)."""
    user = f"Problem: {prompt}\n\nProposed answer: {SENTINEL}\n\n{JUDGE_QUESTION}"
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prefix, postfix = text.split(SENTINEL)
    encode = lambda piece: list(tokenizer.encode(piece, add_special_tokens=False))
    return encode(prefix), encode(postfix)


def judge_reward(policy, yes: str = "Yes", no: str = "No") -> Reward:
    """The judge reward on ``policy``'s own weights (see the module docstring)."""
    if policy.tokenizer is None or not getattr(policy.tokenizer, "chat_template", None):
        raise ValueError("judge reward: the policy needs a tokenizer with a chat template")
    yes_id, no_id = _single_token(policy.tokenizer, yes), _single_token(policy.tokenizer, no)
    head = decoder.output_matrix(policy.config, policy.params)
    params = {key: policy.params[key] for key in ("embed", "layers", "final_norm")}
    params["score"] = {"kernel": (head[:, yes_id] - head[:, no_id])[:, None]}
    config = policy.config.replace(kind=SEQUENCE_CLASSIFICATION, num_labels=1, tie_word_embeddings=False)
    template = functools.partial(judge_template, policy.tokenizer)
    return Reward(config, params, policy.tokenizer, f"{JUDGE_PREFIX}{policy.source}", template)


def load_reward_model(spec: str, policy=None, mesh=None) -> Reward:
    """``judge:NAME`` (NAME loaded as a policy, or the given ``policy`` when it has the same source), else a
    sequence-classifier checkpoint through :func:`nabla_jax.load_reward`. ``mesh`` shards what is loaded here."""
    if spec.startswith(JUDGE_PREFIX):
        name = spec[len(JUDGE_PREFIX):]
        if not name:
            raise ValueError("judge reward: name a causal LM after 'judge:', e.g. judge:smollm2-135m-instruct")
        judge_policy = policy if policy is not None and policy.source == name else load_policy(name, mesh=mesh)
        return judge_reward(judge_policy)
    return load_reward(spec, mesh=mesh)
