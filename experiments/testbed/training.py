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

from experiments.testbed import encoding
from nabla_jax.models import decoder
from nabla_jax.models.config import CAUSAL_LM, SEQUENCE_CLASSIFICATION, DecoderConfig
from nabla_jax.testbed import task


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
    """The policy's architecture plus ``extra_layers`` as a one-label sequence classifier
    (LlamaForSequenceClassification)."""
    return policy.replace(kind=SEQUENCE_CLASSIFICATION, num_labels=1, num_layers=policy.num_layers + extra_layers)


def reward_params_from_policy(policy_config: DecoderConfig, policy_params: dict, key: jax.Array, extra_layers: int = 0) -> dict:
    """The reward model's starting point: a copy of a causal LM's backbone (the teacher's: it already computes the
    arithmetic), then ``extra_layers`` new layers whose output projections start at zero (so they start as the
    identity and the LM's features, its next-token predictions included, reach them intact), then a fresh scalar
    head, and the auxiliary heads used while training (``aux``, dropped by :func:`export_reward_params`)."""
    head_key, layers_key = jax.random.split(key)
    # copies: the training step donates its params
    params = jax.tree_util.tree_map(jnp.copy, {k: v for k, v in policy_params.items() if k != "lm_head"})
    lm_head = jnp.copy(decoder.output_matrix(policy_config, policy_params))
    if extra_layers:
        fresh = decoder.init_params(policy_config.replace(num_layers=extra_layers), layers_key)["layers"]
        fresh["attn"]["o_proj"]["kernel"] = jnp.zeros_like(fresh["attn"]["o_proj"]["kernel"])
        fresh["mlp"]["down_proj"]["kernel"] = jnp.zeros_like(fresh["mlp"]["down_proj"]["kernel"])
        params["layers"] = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), params["layers"], fresh)
    hidden = params["final_norm"]["scale"].shape[0]
    params["score"] = {"kernel": 0.02 * jax.random.normal(head_key, (hidden, 1), jnp.float32)}
    params["aux"] = {"kernel": jnp.zeros((hidden,), jnp.float32), "bias": jnp.zeros((), jnp.float32), "lm": lm_head}
    return params


def export_reward_params(params: dict) -> dict:
    """The sequence classifier's own weights (the auxiliary head removed)."""
    return {k: v for k, v in params.items() if k != "aux"}


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


# ---------------------------------------------------------------- reward model (distilled verifier)


class RewardGroups(NamedTuple):
    """Responses grouped by problem: ``G`` groups of ``K`` candidates each."""

    ids: np.ndarray  # [G, K, T] reward-template ids, right-padded
    valid: np.ndarray  # [G, K, T]
    label: np.ndarray  # [G, K] 1.0 correct, 0.0 incorrect
    response: np.ndarray  # [G, K, T] True at the response's tokens and its <|im_end|> (what the teacher scores)


def _hidden(config: DecoderConfig, params: dict, ids, valid):
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids), _positions(valid), valid)
    return hidden


def reward_scores(config: DecoderConfig, params: dict, ids, valid):
    """Scalar score per row (at the last real token), float32 ``[N]``."""
    return decoder.score(config, params, _hidden(config, params, ids, valid), valid)[:, 0]


def _mean(values, weights):
    weights = weights.astype(jnp.float32)
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def teacher_targets(teacher_config: DecoderConfig, teacher_params: dict, ids, valid, response, clip: float):
    """Per position t: the teacher's clipped log-probability of the token there, its running mean over the response
    tokens so far (carried on past the response, so the last position holds the whole response's mean), and the
    teacher's log-distribution for that token (made at t - 1), ``[N, T, V]``."""
    token_lp, logp = token_logprobs(teacher_config, teacher_params, ids, valid)
    token_lp = jnp.clip(jnp.concatenate([jnp.zeros_like(token_lp[:, :1]), token_lp], axis=1), clip, 0.0)
    weights = response.astype(jnp.float32)
    running = jnp.cumsum(token_lp * weights, axis=1) / jnp.maximum(jnp.cumsum(weights, axis=1), 1.0)
    predicted = jnp.concatenate([jnp.zeros_like(logp[:, :1]), logp], axis=1)  # at t: the distribution made at t - 1
    return jax.lax.stop_gradient(token_lp), jax.lax.stop_gradient(running), jax.lax.stop_gradient(predicted)


def reward_loss(params, config: DecoderConfig, teacher, batch: RewardGroups, weights: dict):
    """Distillation of the teacher's likelihood plus ranking on the exact labels.

    - ``mean``: the score head, read at every position from the response on, regresses the running mean of the
      teacher's clipped token log-probs; at the last position that is the response's mean, which ranks policy
      samples almost as well as the teacher itself (see :mod:`experiments.testbed.recipes.reward`);
    - ``token``: an auxiliary head (``params["aux"]``, dropped at export) regresses each token's own clipped
      log-prob: it teaches the layers to check a token against what the context predicts, which the mean needs;
    - ``carried``: an auxiliary LM head reads, at t, the teacher's prediction made at t - 1 (cross-entropy): the
      extra layers learn to bring the previous position's prediction to the token it is about, fast, because
      the whole distribution is supervised at every position;
    - ``ranking``: Bradley–Terry over every (correct, incorrect) pair inside a group, on the final scores.
    """
    teacher_config, teacher_params, clip = teacher
    groups, k, length = batch.ids.shape
    ids, valid = batch.ids.reshape(-1, length), batch.valid.reshape(-1, length)
    response = batch.response.reshape(-1, length)
    token_lp, running, predicted = teacher_targets(teacher_config, teacher_params, ids, valid, response, clip)
    hidden = _hidden(config, params, ids, valid)
    from_response = valid & (jnp.cumsum(response, axis=1) > 0)
    every = jnp.dot(hidden, params["score"]["kernel"], preferred_element_type=jnp.float32)[..., 0]
    mean = _mean((every - running) ** 2, from_response)
    token_pred = jnp.dot(hidden, params["aux"]["kernel"], preferred_element_type=jnp.float32) + params["aux"]["bias"]
    token = _mean((token_pred - token_lp) ** 2, response)
    carried_logp = jax.nn.log_softmax(jnp.dot(hidden, params["aux"]["lm"], preferred_element_type=jnp.float32), axis=-1)
    carried = _mean(-jnp.sum(jnp.exp(predicted) * carried_logp, axis=-1), response)
    scores = decoder.score(config, params, hidden, valid)[:, 0].reshape(groups, k)
    pairs = batch.label[:, :, None] > batch.label[:, None, :]
    ranking = _mean(-jax.nn.log_sigmoid(scores[:, :, None] - scores[:, None, :]), pairs)
    loss = weights["mean"] * mean + weights["token"] * token + weights["carried"] * carried + weights["ranking"] * ranking
    return loss, {"mean": mean, "token": token, "carried": carried, "ranking": ranking}


@functools.partial(jax.jit, static_argnames=("config", "optimizer", "teacher_config", "clip"), donate_argnums=(0, 1))
def reward_step(params, opt_state, config, optimizer, teacher_config, teacher_params, clip, batch: RewardGroups, weights: dict):
    teacher = (teacher_config, teacher_params, clip)
    (loss, parts), grads = jax.value_and_grad(reward_loss, has_aux=True)(params, config, teacher, batch, weights)
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
