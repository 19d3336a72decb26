"""Reward models by name: a classifier or PRM checkpoint, ``likelihood:PATH`` or ``judge:PATH`` (causal LMs).

The judge reward is a causal LM's own log-odds of "Yes" against "No" after a verification question
(:data:`JUDGE_QUESTION`), built as a sequence classifier whose one-label score head is the difference of the LM-head
rows of "Yes" and "No": differentiable through soft tokens, on the policy's vocabulary, untrained, and only as good a
verifier as the LM.

The likelihood reward is a causal LM's mean token log-probability of the response (EOS included) after its own chat
template's generation prompt, each token's floored at ``clip``.

The judge's prompt in full: docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

from nabla_jax.bundled import JUDGE_PREFIX, LIKELIHOOD_PREFIX, resolve_spec
from nabla_jax.templates import SENTINEL, chat_messages, chat_prompt_ids, split_at_sentinel
from nabla_jax.loading import load_policy
from nabla_jax.models import decoder
from nabla_jax.models.config import SEQUENCE_CLASSIFICATION, load_config
from nabla_jax.rewards.kinds import LIKELIHOOD, PROCESS, UNSET, RewardKind
from nabla_jax.rewards.model import Reward, checkpoint_reward

JUDGE_QUESTION = "Is the proposed answer correct? Answer Yes or No."
QWEN_PRM_SEPARATOR = "<extra_0>"
# A checkpoint's own reading options, in its config.json under this key (e.g. a PRM's separator and step split, a
# likelihood reward's clip); they replace READING_DEFAULTS, and what a caller passes replaces them.
STORED_OPTIONS_KEY = "nabla_jax_reward_options"
READING_DEFAULTS = {"aggregate": "min", "separator": QWEN_PRM_SEPARATOR, "step_split": "\n\n", "clip": None,
                    "target_gradient": True}


def stored_reading_options(path: str) -> dict:
    """The reading options a checkpoint directory stores with itself ({} when none)."""
    config_file = os.path.join(path, "config.json") if isinstance(path, str) else ""
    if not os.path.isfile(config_file):
        return {}
    with open(config_file, encoding="utf-8") as handle:
        try:
            stored = json.load(handle).get(STORED_OPTIONS_KEY) or {}
        except (ValueError, AttributeError):
            return {}  # loading the checkpoint says what is wrong with its config
    unknown = set(stored) - set(READING_DEFAULTS) if isinstance(stored, dict) else {"(not a table)"}
    if unknown:
        raise ValueError(f"{config_file}: {STORED_OPTIONS_KEY} has unknown options {sorted(unknown)}; known: "
                         f"{sorted(READING_DEFAULTS)}")
    return dict(stored)


def reading_options(path: str, **given) -> dict:
    """The defaults, replaced by what ``path`` stores, replaced by the ``given`` options that are not UNSET."""
    options = {**READING_DEFAULTS, **stored_reading_options(path)}
    options.update({k: v for k, v in given.items() if v is not UNSET})
    return options


def _single_token(tokenizer, text: str, what: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{what}: {text!r} is {len(ids)} tokens for this tokenizer; it must be one token")
    return ids[0]


def judge_template(tokenizer, prompt: str, system: str | None = None) -> tuple[list[int], list[int]]:
    """Ids before and after the response in the judge's input (its chat template, generation prompt appended)."""
    user = f"Problem: {prompt}\n\nProposed answer: {SENTINEL}\n\n{JUDGE_QUESTION}"
    text = tokenizer.apply_chat_template(chat_messages(user, system), tokenize=False, add_generation_prompt=True)
    return split_at_sentinel(tokenizer, text, "judge's chat template")


def judge_reward(policy, yes: str = "Yes", no: str = "No") -> Reward:
    """The judge reward on ``policy``'s own weights (see the module docstring)."""
    if policy.tokenizer is None or not getattr(policy.tokenizer, "chat_template", None):
        raise ValueError("judge reward: the policy needs a tokenizer with a chat template")
    yes_id = _single_token(policy.tokenizer, yes, "judge reward")
    no_id = _single_token(policy.tokenizer, no, "judge reward")
    head = decoder.output_matrix(policy.config, policy.params)
    params = {key: policy.params[key] for key in ("embed", "layers", "final_norm")}
    params["score"] = {"kernel": (head[:, yes_id] - head[:, no_id])[:, None]}
    config = policy.config.replace(kind=SEQUENCE_CLASSIFICATION, num_labels=1, tie_word_embeddings=False)
    template = functools.partial(judge_template, policy.tokenizer)
    return Reward(config, params, policy.tokenizer, f"{JUDGE_PREFIX}{policy.source}", template)


def likelihood_template(tokenizer, prompt: str, system: str | None = None) -> tuple[list[int], list[int]]:
    """The LM's own generation prompt before the response; nothing after it (only response tokens are scored)."""
    return chat_prompt_ids(tokenizer, prompt, system, role="likelihood reward's LM"), []


def likelihood_reward(lm, clip: float | None = None, target_gradient: bool = True) -> Reward:
    """A causal LM (a loaded ``Policy``) as a likelihood reward (see the module docstring); ``target_gradient``:
    :class:`RewardKind`'s."""
    if lm.config.is_reward_model:
        raise ValueError(f"likelihood reward: {lm.source} is a reward model, not a causal LM")
    if lm.tokenizer is None or not getattr(lm.tokenizer, "chat_template", None):
        raise ValueError(f"likelihood reward: {lm.source} needs a tokenizer with a chat template")
    kind = RewardKind(LIKELIHOOD, clip=clip, target_gradient=target_gradient)
    template = functools.partial(likelihood_template, lm.tokenizer)
    return Reward(lm.config, lm.params, lm.tokenizer, f"{LIKELIHOOD_PREFIX}{lm.source}", template, kind=kind)


def step_end_ids(tokenizer, vocab_size: int, step_split: str) -> tuple[int, ...]:
    """Ids of every token whose text ends with ``step_split`` (e.g. "\\n\\n", or "\\n" for one step a line)."""
    texts = tokenizer.batch_decode([[i] for i in range(min(vocab_size, len(tokenizer)))])
    return tuple(i for i, text in enumerate(texts) if text.endswith(step_split))


def process_kind(tokenizer, vocab_size: int, aggregate: str = "min", separator: str | None = QWEN_PRM_SEPARATOR,
                 step_split: str = "\n\n", where: str = "process reward") -> RewardKind:
    """The :class:`RewardKind` of a PRM: steps end at tokens ending with ``step_split`` (and at the response's end);
    ``separator`` (a token of the PRM's vocabulary) is inserted after each step, or None to read the PRM at the
    step-end token itself."""
    if tokenizer is None:
        raise ValueError(f"{where}: a process reward model needs its tokenizer to find steps and separators")
    separator_id = None
    if separator is not None:
        found = tokenizer.convert_tokens_to_ids(separator)
        if found is None or found == tokenizer.unk_token_id or not 0 <= int(found) < vocab_size:
            raise ValueError(
                f"{where}: the step separator token {separator!r} is not in the PRM's vocabulary; pass the token "
                "the PRM was trained with (--reward-separator), or none to score at the step-end tokens"
            )
        separator_id = int(found)
    ends = step_end_ids(tokenizer, vocab_size, step_split) if step_split else ()
    if not ends and separator_id is None:
        raise ValueError(f"{where}: no token of the vocabulary ends with the step split {step_split!r}")
    return RewardKind(PROCESS, aggregate=aggregate, step_end_ids=ends, separator_id=separator_id)


def _likelihood_only(named: str, target_gradient) -> None:
    """Refuse, before anything loads, a context-only gradient for a reward that reads no targets."""
    if target_gradient is not True and target_gradient is not UNSET:
        raise ValueError(f"{named}: target_gradient applies to a likelihood reward (likelihood:LM) only")


def load_reward(spec: str, policy=None, mesh=None, aggregate=UNSET, separator=UNSET, step_split=UNSET,
                      clip=UNSET, target_gradient=UNSET, dtype=None, allow_nonfinite: bool = False) -> Reward:
    """``judge:PATH``, ``likelihood:PATH`` (PATH loaded as a causal LM, or the given ``policy`` when it has that
    source; ``clip`` floors a likelihood reward's token log-probabilities; ``target_gradient=False`` passes its
    gradient through the context only), or a reward checkpoint: a sequence
    classifier (outcome) or a PRM (process, with ``aggregate``, ``separator`` and ``step_split``). PATH may be a
    bundled name (``testbed:prm``, ``likelihood:testbed:verifier``). Reading options left out come from the
    checkpoint's config.json (:data:`STORED_OPTIONS_KEY`), else :data:`READING_DEFAULTS`. ``mesh`` shards and
    ``dtype`` casts what is loaded here; non-finite weights are refused unless ``allow_nonfinite``."""
    checked = {"mesh": mesh, "allow_nonfinite": allow_nonfinite}
    given = {"aggregate": aggregate, "separator": separator, "step_split": step_split, "clip": clip,
             "target_gradient": target_gradient}
    named, spec = spec, resolve_spec(spec)
    for prefix in (JUDGE_PREFIX, LIKELIHOOD_PREFIX):
        if spec.startswith(prefix):
            name = spec[len(prefix):]
            if not name:
                raise ValueError(f"{prefix[:-1]} reward: name a causal LM after {prefix!r}, e.g. {prefix}PATH")
            source = named[len(prefix):]
            if prefix == JUDGE_PREFIX:
                _likelihood_only(named, target_gradient)
            lm = (policy if policy is not None and policy.source in (name, source)
                  else load_policy(name, dtype, **checked))
            if prefix == JUDGE_PREFIX:
                return judge_reward(lm)
            options = reading_options(name, **given)
            return likelihood_reward(lm, options["clip"], options["target_gradient"])
    options = reading_options(spec, **given)
    _likelihood_only(named, options["target_gradient"])
    aggregate, separator, step_split = options["aggregate"], options["separator"], options["step_split"]
    config = None  # a GGUF file, a bundled name or a bad path: checkpoint_reward says what it is
    if os.path.isfile(os.path.join(spec, "config.json")):
        config = load_config(spec)
    if config is not None and config.is_process_reward:
        reward = checkpoint_reward(spec, RewardKind(PROCESS, separator_id=0), dtype, **checked)
        kind = process_kind(reward.tokenizer, reward.config.vocab_size, aggregate, separator, step_split, spec)
        return dataclasses.replace(reward, kind=kind)
    return checkpoint_reward(spec, RewardKind(), dtype, **checked)
