"""Shared setup for the DTO tests (no tests here): a tiny Llama policy, a tiny Qwen2 reward model, fixed buffer sizes.

Every DTO test uses the same model configs and buffer shapes, so compiled programs are shared within a module.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import nabla_jax
from nabla_jax.char_tokenizer import build_char_tokenizer
from nabla_jax.rewards import Reward
from nabla_jax.dto import dto_models, make_problem, chat_prompt_ids, reward_template_ids
from nabla_jax.models import decoder

POLICY, REWARD = "llama", "qwen2_cls"
# Test-only programs compile with LLVM optimisation off: they check relations inside one program, and compiling
# at -O0 takes about half the time (the library's own jitted entry point is still compiled normally).
FAST_COMPILE = {"xla_backend_optimization_level": 0}
SIZES = (32, 32, 8)  # (P, R, Q) buffers: what dto_optimize buckets these cases to
AHEAD = 8  # A buffer
CASES = [("2+3?", "It", " is 5"), ("Hi", "", "Hello!")]


def load_pair(hf_checkpoint):
    """Policy, reward and their ModelPair. The reward keeps a freshly built char tokenizer: transformers 5 loads the
    saved one next to a qwen2 config as a Qwen2Tokenizer whose byte-level pre-tokenizer drops whitespace."""
    policy = nabla_jax.load_policy(hf_checkpoint(POLICY)[0])
    loaded = nabla_jax.load_reward(hf_checkpoint(REWARD)[0])
    reward = Reward(loaded.config, loaded.params, build_char_tokenizer(), loaded.source)
    return policy, reward, dto_models(policy, reward)


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


def build_problem(policy, reward_tokenizer, models, prompt, committed, ahead_text, sizes=SIZES):
    """``(problem, lm_ids, ahead_ids)`` for one case, the reward side in ``reward_tokenizer``'s ids."""
    done = encode(policy.tokenizer, committed)
    ahead = encode(policy.tokenizer, ahead_text)
    lm = chat_prompt_ids(policy.tokenizer, prompt) + done
    rm_prefix, rm_postfix = reward_template_ids(reward_tokenizer, prompt)
    rm_prefix = rm_prefix + np.asarray(models.reward_index)[done].tolist()
    return make_problem(lm, len(ahead), rm_prefix, rm_postfix, sizes), lm, ahead


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_COMPILE)
def _final_hidden(config, params, ids):
    n = ids.shape[1]
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids), jnp.arange(n)[None], jnp.ones((1, n), bool))
    return hidden[0]


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_COMPILE)
def _score(config, params, ids, mask):
    n = ids.shape[1]
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids), jnp.arange(n)[None], mask)
    return decoder.score(config, params, hidden, mask)[0, 0]


def padded(ids, size=64):
    out = np.zeros((1, size), np.int32)
    out[0, : len(ids)] = ids
    return jnp.asarray(out), jnp.asarray(np.arange(size) < len(ids))[None]


def reference_loglik(policy, lm_ids, tokens) -> float:
    """sum_i log p(tokens_i | lm_ids, tokens_<i) by a plain forward of the hard sequence."""
    ids, _ = padded(lm_ids + tokens)
    hidden = _final_hidden(policy.config, policy.params, ids)[len(lm_ids) - 1 : len(lm_ids) - 1 + len(tokens)]
    logp = jax.nn.log_softmax(decoder.lm_logits(policy.config, policy.params, hidden), axis=-1)
    return float(jnp.sum(logp[jnp.arange(len(tokens)), jnp.asarray(tokens)]))


def reference_score(reward, ids) -> float:
    """The reward model's score of a plain id sequence (no DTO code involved)."""
    return float(_score(reward.config, reward.params, *padded(ids)))


def rollout_init(policy, lm_ids, ahead_ids, embedder="logits", size=AHEAD):
    """The policy's logits (or final hidden states) predicting each ahead token, zero-padded to ``size`` rows.

    Runs a fixed 64-token buffer (right padding never affects earlier positions), so every case shares one compile.
    """
    ids, _ = padded(lm_ids + ahead_ids)
    hidden = _final_hidden(policy.config, policy.params, ids)
    hidden = hidden[len(lm_ids) - 1 : len(lm_ids) - 1 + len(ahead_ids)]
    rows = hidden if embedder == "latents" else decoder.lm_logits(policy.config, policy.params, hidden)
    return jnp.zeros((size, rows.shape[-1]), jnp.float32).at[: len(ahead_ids)].set(rows)


def cases(policy, reward, models):
    """Problems and logits inits for :data:`CASES`."""
    out = []
    for prompt, committed, ahead_text in CASES:
        problem, lm, ahead = build_problem(policy, reward.tokenizer, models, prompt, committed, ahead_text)
        out.append((problem, rollout_init(policy, lm, ahead), lm, ahead))
    return out


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
