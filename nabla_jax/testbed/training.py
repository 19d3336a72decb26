"""Reusable training pieces for the testbed policy and reward model: configs, batches, losses, jitted steps.

Everything is a pure function of arrays; the scripts in ``experiments/testbed/`` drive them with a seed.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nabla_jax.models import decoder
from nabla_jax.models.config import CAUSAL_LM, SEQUENCE_CLASSIFICATION, DecoderConfig
from nabla_jax.testbed import encoding, task


def policy_config(hidden: int = 128, layers: int = 3, heads: int = 4, kv_heads: int = 2, mlp: int = 384) -> DecoderConfig:
    """A small Llama over the testbed's char vocabulary (untied head, pad 0, bos 1, eos 2)."""
    return DecoderConfig(
        family="llama",
        kind=CAUSAL_LM,
        vocab_size=len(encoding.tokenizer()),
        hidden_size=hidden,
        intermediate_size=mlp,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=hidden // heads,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        max_position_embeddings=256,
        pad_token_id=encoding.PAD_ID,
        bos_token_id=1,
        eos_token_ids=(encoding.EOS_ID,),
    )


def reward_config(policy: DecoderConfig, extra_layers: int = 0) -> DecoderConfig:
    """The policy's backbone plus ``extra_layers`` as a one-label sequence classifier
    (LlamaForSequenceClassification)."""
    return policy.replace(kind=SEQUENCE_CLASSIFICATION, num_labels=1, num_layers=policy.num_layers + extra_layers)


def reward_params_from_policy(policy_config: DecoderConfig, policy_params: dict, key: jax.Array, extra_layers: int = 0) -> dict:
    """The reward model starts from the policy's backbone (it already computes the arithmetic), then
    ``extra_layers`` new layers whose output projections start at zero (so they start as the identity and the
    policy's features, its next-token predictions included, reach them intact), then a fresh scalar head."""
    head_key, layers_key = jax.random.split(key)
    # copies: the training step donates its params, and the policy must stay usable for sampling
    params = jax.tree_util.tree_map(jnp.copy, {k: v for k, v in policy_params.items() if k != "lm_head"})
    if extra_layers:
        fresh = decoder.init_params(policy_config.replace(num_layers=extra_layers), layers_key)["layers"]
        fresh["attn"]["o_proj"]["kernel"] = jnp.zeros_like(fresh["attn"]["o_proj"]["kernel"])
        fresh["mlp"]["down_proj"]["kernel"] = jnp.zeros_like(fresh["mlp"]["down_proj"]["kernel"])
        params["layers"] = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), params["layers"], fresh)
    hidden = params["final_norm"]["scale"].shape[0]
    params["score"] = {"kernel": 0.02 * jax.random.normal(head_key, (hidden, 1), jnp.float32)}
    return params


# ---------------------------------------------------------------- policy (supervised fine-tuning on solutions)


class PolicyBatch(NamedTuple):
    ids: np.ndarray  # [N, T] prompt + solution + EOS, right-padded
    valid: np.ndarray  # [N, T]
    target: np.ndarray  # [N, T] True where ids[:, t] is an assistant token (predicted from t - 1)


def policy_examples(problems: list[task.Problem], length: int = encoding.POLICY_LENGTH) -> PolicyBatch:
    rows, starts = [], []
    for p in problems:
        prompt = encoding.prompt_ids(task.format_prompt(p))
        rows.append(prompt + encoding.text_ids(task.format_solution(p)) + [encoding.EOS_ID])
        starts.append(len(prompt))
    ids, valid = encoding.pad_right(rows, length)
    target = valid & (np.arange(ids.shape[1])[None, :] >= np.asarray(starts)[:, None])
    return PolicyBatch(ids, valid, target)


def _positions(valid):
    return jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)


def token_logprobs(config: DecoderConfig, params: dict, ids, valid):
    """``log p(ids[:, t] | ids[:, :t])`` for t >= 1, as ``[N, T-1]`` float32, plus the full log-softmax."""
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids), _positions(valid), valid)
    logp = jax.nn.log_softmax(decoder.lm_logits(config, params, hidden[:, :-1]), axis=-1)
    return jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0], logp


def policy_loss(params, config: DecoderConfig, ids, valid, target):
    """Mean next-token cross-entropy over the assistant tokens (solution and EOS) only."""
    token_lp, _ = token_logprobs(config, params, ids, valid)
    weights = target[:, 1:].astype(jnp.float32)
    return -jnp.sum(token_lp * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def make_optimizer(learning_rate: float, steps: int, warmup: int = 100, weight_decay: float = 0.01, clip: float = 1.0):
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(warmup, max(steps - 1, 1)), max(steps, 2), learning_rate * 0.1)
    return optax.chain(optax.clip_by_global_norm(clip), optax.adamw(schedule, b2=0.98, weight_decay=weight_decay))


@functools.partial(jax.jit, static_argnames=("config", "optimizer"), donate_argnums=(0, 1))
def policy_step(params, opt_state, config: DecoderConfig, optimizer, ids, valid, target):
    loss, grads = jax.value_and_grad(policy_loss)(params, config, ids, valid, target)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames=("config",))
def policy_token_stats(config: DecoderConfig, params, ids, valid, target):
    """Per assistant token: (log-prob of the target, max prob, argmax == target, entropy), each ``[N, T-1]``."""
    token_lp, logp = token_logprobs(config, params, ids, valid)
    probs = jnp.exp(logp)
    max_prob = jnp.max(probs, axis=-1)
    hit = jnp.argmax(logp, axis=-1) == ids[:, 1:]
    entropy = -jnp.sum(probs * logp, axis=-1)
    return token_lp, max_prob, hit, entropy


# ---------------------------------------------------------------- reward model (pairwise ranking)


class RewardGroups(NamedTuple):
    """Responses grouped by problem: ``G`` groups of ``K`` candidates each."""

    ids: np.ndarray  # [G, K, T] reward-template ids, right-padded
    valid: np.ndarray  # [G, K, T]
    label: np.ndarray  # [G, K] 1.0 correct, 0.0 incorrect
    present: np.ndarray  # [G, K] False for filler slots
    on_track: np.ndarray  # [G, K, T] 1.0 where the response so far is a prefix of the reference solution
    dense: np.ndarray  # [G, K, T] True at the response's tokens and the closing tokens (where on_track counts)


def on_track_labels(response: str, reference: str, correct: bool) -> list[float]:
    """Per response character: is the text up to and including it a prefix of the reference? Then the final
    correctness for the two closing tokens (``<|im_end|>`` and the newline)."""
    first_miss = next((i for i, c in enumerate(response) if i >= len(reference) or reference[i] != c), len(response))
    return [float(i < first_miss) for i in range(len(response))] + [float(correct)] * 2


def _hidden(config: DecoderConfig, params: dict, ids, valid):
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids), _positions(valid), valid)
    return hidden


def reward_scores(config: DecoderConfig, params: dict, ids, valid):
    """Scalar score per row (at the last real token), float32 ``[N]``."""
    return decoder.score(config, params, _hidden(config, params, ids, valid), valid)[:, 0]


def _mean(values, weights):
    weights = weights.astype(jnp.float32)
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def reward_loss(params, config: DecoderConfig, batch: RewardGroups, pointwise_weight: float, dense_weight: float):
    """Bradley–Terry loss over every (correct, incorrect) pair inside a group, plus a pointwise logistic term
    (so scores are comparable across problems) and a dense auxiliary one: the same head read at every response
    token predicts whether the response is still on the reference's track. The dense term gives the backbone a
    signal at the token where a mistake happens, which the final score alone reaches only slowly."""
    groups, k, length = batch.ids.shape
    ids, valid = batch.ids.reshape(-1, length), batch.valid.reshape(-1, length)
    hidden = _hidden(config, params, ids, valid)
    scores = decoder.score(config, params, hidden, valid)[:, 0].reshape(groups, k)
    diff = scores[:, :, None] - scores[:, None, :]
    pairs = (batch.label[:, :, None] > batch.label[:, None, :]) & batch.present[:, :, None] & batch.present[:, None, :]
    ranking = _mean(-jax.nn.log_sigmoid(diff), pairs)
    pointwise = _mean(optax.sigmoid_binary_cross_entropy(scores, batch.label), batch.present)
    every = jnp.dot(hidden, params["score"]["kernel"], preferred_element_type=jnp.float32)[..., 0]
    dense = _mean(
        optax.sigmoid_binary_cross_entropy(every, batch.on_track.reshape(-1, length)),
        batch.dense.reshape(-1, length) & batch.present.reshape(-1)[:, None],
    )
    loss = ranking + pointwise_weight * pointwise + dense_weight * dense
    return loss, {"ranking": ranking, "pointwise": pointwise, "dense": dense}


@functools.partial(jax.jit, static_argnames=("config", "optimizer", "pointwise_weight", "dense_weight"), donate_argnums=(0, 1))
def reward_step(params, opt_state, config, optimizer, batch: RewardGroups, pointwise_weight: float = 0.2, dense_weight: float = 1.0):
    (loss, parts), grads = jax.value_and_grad(reward_loss, has_aux=True)(params, config, batch, pointwise_weight, dense_weight)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, parts


@functools.partial(jax.jit, static_argnames=("config",))
def score_batch(config: DecoderConfig, params, ids, valid):
    return reward_scores(config, params, ids, valid)


def score_texts(config, params, prompts: list[str], responses: list[str], batch_size: int = 512, length: int | None = None) -> np.ndarray:
    """Reward of each (prompt, response) pair, float32 numpy ``[N]``; chunks padded to one shape."""
    rows = [encoding.reward_ids(p, r) for p, r in zip(prompts, responses)]
    ids, valid = encoding.pad_right(rows, length or max(encoding.REWARD_LENGTH, max(len(r) for r in rows)))
    out = []
    for start in range(0, len(rows), batch_size):
        chunk_ids, chunk_valid = ids[start : start + batch_size], valid[start : start + batch_size]
        n = len(chunk_ids)
        if n < batch_size and len(rows) > batch_size:
            chunk_ids = np.concatenate([chunk_ids, np.repeat(chunk_ids[-1:], batch_size - n, 0)])
            chunk_valid = np.concatenate([chunk_valid, np.repeat(chunk_valid[-1:], batch_size - n, 0)])
        out.append(np.asarray(score_batch(config, params, jnp.asarray(chunk_ids), jnp.asarray(chunk_valid)))[:n])
    return np.concatenate(out)
