"""A plain eager ∇-Reasoner, one problem at a time, written to read like the paper (Alg. 1/3) and the official loop
(paper.md §2.2). Python lists hold the prefix and the rollout; the models run through the same primitives as the
library (rollout, DTO, sampling, reward), each jitted on its own. It is the reference the jitted, batched decoder
must match token for token and count for count."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.dto.api import run_dto_batch
from nabla_jax.dto.probes import selection_probes
from nabla_jax.dto.prefix_cache import build_prefix_cache
from nabla_jax.dto.problem import make_problem as make_dto_problem
from nabla_jax.generation.rollouts import rollout
from nabla_jax.generation.sampling import sample_token
from nabla_jax.models import decoder
from nabla_jax.reasoner.phases import RESAMPLE_STREAM, ROLLOUT_STREAM


@functools.partial(jax.jit, static_argnums=(0, 2))
def _rollout(config, params, spec, prompt, prompt_len, key, budget, response_start):
    return rollout(config, params, spec, prompt, prompt_len, key, budget, response_start)


@functools.partial(jax.jit, static_argnums=(0,))
def _hidden(config, params, ids, length):
    valid = (jnp.arange(ids.shape[0]) < length)[None]
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids[None]), jnp.arange(ids.shape[0])[None], valid)
    return hidden[0]


def python_reward_input(kind, prefix: list[int], response: list[int], postfix: list[int], final: bool):
    """``(ids, counted)`` written out by hand: a separator after every step of a separator PRM, and the slots each
    kind reads (the last slot; every response token; each separator or step-end token)."""
    ids, counted = list(prefix), [False] * len(prefix)
    for i, token in enumerate(response):
        ends = token in kind.step_end_ids or (final and i == len(response) - 1)
        ids.append(token)
        counted.append(kind.name == "likelihood" or (kind.name == "process" and kind.separator_id is None and ends))
        if kind.name == "process" and kind.separator_id is not None and ends:
            ids.append(kind.separator_id)
            counted.append(True)
    ids += postfix
    counted += [False] * len(postfix)
    if kind.name == "outcome" and final:
        counted[-1] = True
    return ids, counted


def numpy_reward(kind, config, params, ids: list[int], counted: list[bool], size: int) -> float:
    """The reward read from the hidden states in numpy (an independent readout)."""
    hidden = np.asarray(_hidden(config, params, jnp.asarray(padded(ids, size)), len(ids)), np.float64)[: len(ids)]
    head = jax.tree.map(lambda x: np.asarray(x, np.float64), params.get("score", {}))
    if kind.name == "outcome":
        return float(hidden[len(ids) - 1] @ head["kernel"][:, 0])
    if kind.name == "process":
        h = np.maximum(hidden @ head["hidden"]["kernel"] + head["hidden"]["bias"], 0.0)
        logits = h @ head["out"]["kernel"] + head["out"]["bias"]
        values = 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))
    else:
        logits = np.asarray(decoder.lm_logits(config, params, jnp.asarray(hidden, jnp.float32)), np.float64)
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        values = np.full(len(ids), np.nan)
        values[1:] = logp[np.arange(len(ids) - 1), ids[1:]]
        if kind.clip is not None:
            values = np.maximum(values, kind.clip)
    chosen = values[np.asarray(counted)]
    if chosen.size == 0:
        return 0.0
    if kind.name == "likelihood" or kind.aggregate == "mean":
        return float(chosen.mean())
    return float({"min": chosen.min(), "prod": np.prod(chosen), "last": chosen[-1]}[kind.aggregate])


def padded(ids, size):
    """Fixed-size buffers, so each primitive compiles once per problem rather than once per length."""
    out = np.zeros(size, np.int32)
    out[: len(ids)] = ids
    return out


@functools.partial(jax.jit, static_argnums=(1,))
def _probes(models, dto_config, problem, init):
    cache = build_prefix_cache(models, problem, init.shape[0])
    return selection_probes(models, dto_config, problem, cache, init)


def key_for(problem_key, stream, position):
    return jax.random.fold_in(jax.random.fold_in(problem_key, stream), position)


def reference_decode(reasoner, prompt: str, problem_key, prompt_buffer: int = 64) -> tuple[list[int], dict]:
    """Decode one problem eagerly; returns (response token ids, statistics). Buffers have the same sizes for every
    prompt of at most ``prompt_buffer`` tokens, so a test compiles each primitive once."""
    cfg, spec, models = reasoner.config, reasoner.spec(), reasoner.models
    lm_cfg, lm_params = models.lm_config, models.lm_params
    (prompt_ids, rm_prefix, rm_postfix), = reasoner.encode([prompt])
    assert len(prompt_ids) <= prompt_buffer and len(rm_prefix) <= prompt_buffer and len(rm_postfix) <= 8
    reward_index = np.asarray(models.reward_index)
    n_max = cfg.max_new_tokens
    stats = dict(rollouts=0, proposals=0, rejections=0, acceptance_tests=0, generated_tokens=0, dto_runs=0,
                 dto_full_steps=0, dto_cached_steps=0, selector_passes=0, skipped_tokens=0, budget_tokens=0,
                 iterations=0, verifier_passes=0)

    def roll(prefix: list[int]):
        """A rollout after ``prefix`` (prompt + response so far): its tokens and latents."""
        budget = n_max - (len(prefix) - len(prompt_ids))
        buffer = padded(prefix, prompt_buffer + n_max)
        key = key_for(problem_key, ROLLOUT_STREAM, len(prefix) - len(prompt_ids))
        out = _rollout(lm_cfg, lm_params, spec, jnp.asarray(buffer), len(prefix), key, budget, len(prompt_ids))
        n = int(out.length)
        stats["rollouts"] += 1
        stats["generated_tokens"] += n
        return [int(t) for t in out.tokens[:n]], np.asarray(out.latents[:n])

    kind = models.reward_kind

    def reward(response: list[int]) -> float:
        ids, counted = python_reward_input(kind, rm_prefix, [int(reward_index[t]) for t in response], rm_postfix, True)
        size = prompt_buffer + 2 * n_max + 8
        return numpy_reward(kind, models.rm_config, models.rm_params, ids, counted, size)

    def dto_problem(past, ahead):
        committed = past[len(prompt_ids):]
        sizes = (prompt_buffer + n_max, prompt_buffer + 2 * n_max, 8)
        rm_committed, counted = python_reward_input(kind, rm_prefix, [int(reward_index[t]) for t in committed], [], False)
        return make_dto_problem(past, len(ahead), rm_committed, rm_postfix, sizes, counted)

    def verifier_logprobs(past) -> np.ndarray:
        """log p of every next token under the likelihood reward's LM, after its template and the committed
        response, by policy id (one plain forward)."""
        ids = list(rm_prefix) + [int(reward_index[t]) for t in past[len(prompt_ids):]]
        n = len(ids)
        hidden, _ = decoder.forward(models.rm_config, models.rm_params, decoder.embed(models.rm_params, jnp.asarray([ids])),
                                    jnp.arange(n)[None], jnp.ones((1, n), bool))
        logits = np.asarray(decoder.lm_logits(models.rm_config, models.rm_params, hidden[0, -1]), np.float64)
        logp = logits - logits.max() - np.log(np.sum(np.exp(logits - logits.max())))
        return logp[reward_index].astype(np.float32)

    def variables(latents):
        """The DTO variables of the ahead tokens, padded to ``n_max`` rows."""
        latents = np.concatenate([latents, np.zeros((n_max - len(latents), latents.shape[1]), latents.dtype)])
        if cfg.dto.embedder == "latents":
            return jnp.asarray(latents, jnp.float32)
        return decoder.lm_logits(lm_cfg, lm_params, jnp.asarray(latents))

    past = list(prompt_ids)
    ahead, latents = roll(past)
    while ahead:
        stats["iterations"] += 1
        checked = cfg.budget_check == "before" or stats["iterations"] > 1  # "after": once an iteration has run
        if checked and stats["rollouts"] >= cfg.max_n_generations:  # budget spent: commit the rest of the rollout
            past += ahead
            stats["budget_tokens"] += len(ahead)
            break
        # token selection over the whole ahead rollout
        logits = np.asarray(variables(latents) if cfg.dto.embedder == "logits" else decoder.lm_logits(lm_cfg, lm_params, jnp.asarray(variables(latents))))[: len(ahead)]
        selected = np.ones(len(ahead), bool)
        if cfg.selection:
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            if cfg.confidence_threshold is not None:
                selected &= probs.max(-1) <= cfg.confidence_threshold
            if cfg.entropy_threshold is not None:
                selected &= -(probs * np.log(np.maximum(probs, 1e-38))).sum(-1) >= cfg.entropy_threshold
            if cfg.grad_threshold is not None:
                probes = _probes(models, cfg.dto, dto_problem(past, ahead), variables(latents))
                selected &= np.asarray(probes.grad_norm)[: len(ahead)] >= cfg.grad_threshold
                stats["selector_passes"] += 1
        p = int(np.argmax(selected)) if selected.any() else len(ahead)
        past, ahead, latents = past + ahead[:p], ahead[p:], latents[p:]
        stats["skipped_tokens"] += p
        if not ahead:
            break
        # DTO, then resample the first token from the optimised logits
        if cfg.use_dto:
            state, first_logits, _ = run_dto_batch(
                models, cfg.dto, jax.tree.map(lambda x: x[None], dto_problem(past, ahead)),
                variables(latents)[None], jax.random.PRNGKey(0)[None],
            )
            first = first_logits[0, 0]
            stats["dto_runs"] += 1
            stats["dto_full_steps"] += int(state.full_steps[0])
            stats["dto_cached_steps"] += int(state.cached_steps[0])
        else:
            first = logits[p]
            if cfg.mix_beta is not None:  # the mixture control: the verifier LM's next-token log-probabilities
                first = first + cfg.mix_beta * verifier_logprobs(past)
                stats["verifier_passes"] += 1
        key = key_for(problem_key, RESAMPLE_STREAM, len(past) - len(prompt_ids))
        token = int(sample_token(jnp.asarray(first), key, cfg.resample))
        if token != ahead[0]:
            stats["proposals"] += 1
            if token in spec.eos_ids:
                stats["rollouts"] += 1  # a proposal that ends the response: a rollout of no tokens
                new_ahead, new_latents = [], latents[:0]
            else:
                new_ahead, new_latents = roll(past + [token])
            accept = True
            if cfg.rejection_sampling:
                stats["acceptance_tests"] += 1
                response = past[len(prompt_ids):]
                accept = reward(response + [token] + new_ahead) > reward(response + ahead)
            if accept:
                past, ahead, latents = past + [token], new_ahead, new_latents
                continue
            stats["rejections"] += 1
        past, ahead, latents = past + ahead[:1], ahead[1:], latents[1:]
    return past[len(prompt_ids):], stats
