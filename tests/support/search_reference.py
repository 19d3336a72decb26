"""An eager reference for the step-level searches: one problem, plain Python and numpy over one-row model calls
(a rollout to the next step end, a PRM pass), written from the methods' definitions, not from the jitted loop."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.generation.rollouts import FINISH_NONFINITE, rollout
from nabla_jax.models.flops import decode_flops, forward_flops
from nabla_jax.reasoner.problem import encode_problems, response_reward, response_step_reward, stack_problems
from nabla_jax.search.config import BEAM, DVTS, PARTICLES
from nabla_jax.seeds import seed_key


@dataclasses.dataclass
class Row:
    sequence: np.ndarray
    length: int = 0
    done: bool = False
    alive: bool = True
    last: float = 0.0
    score: float = 0.0


@functools.partial(jax.jit, static_argnums=(0, 2))
def _one_rollout(config, params, spec, sequence, prefix_len, key, budget):
    return rollout(config, params, spec, sequence, prefix_len, key, budget, prefix_len)


def reference_search(searcher, prompt: str, seed: int = 0, problem_id: int = 0, resample: bool = True):
    """``(token_ids, score, costs, rows)`` of ``searcher``'s method on ``prompt``; ``resample=False`` never moves a
    particle (independent step-by-step samples)."""
    cfg, models, spec = searcher.config, searcher.models, searcher.spec
    encoded = encode_problems(searcher.policy, searcher.reward, [prompt], cfg.max_new_tokens)
    problems = stack_problems(models, encoded, [problem_id], seed_key(seed), cfg.max_new_tokens, queue=False)
    problem = jax.tree.map(lambda x: x[0], problems)
    prompt_len = int(problem.prompt_len)
    score = jax.jit(lambda seq, n: response_step_reward(models, problem, seq, n, searcher.rm_pad, cfg.max_new_tokens))
    rows = [Row(np.asarray(problem.prompt_ids)) for _ in range(cfg.n)]
    best = None  # (score, sequence, length) of the best finished row set aside (beam, dvts)
    costs = dict(official_calls=0, full_calls=0, flops=0.0, generated_tokens=0, rollouts=0, reward_calls=0)
    for step in range(cfg.steps):
        active = [r.alive and not r.done for r in rows]
        if not any(active):
            break
        for j, row in enumerate(rows):
            if not active[j]:
                continue
            prefix = prompt_len + row.length
            stream = jax.random.fold_in(jax.random.fold_in(problem.key, 0), j)
            out = _one_rollout(models.lm_config, models.lm_params, spec, jnp.asarray(row.sequence), prefix,
                               jax.random.fold_in(stream, row.length), cfg.max_new_tokens - row.length)
            generated = int(out.length)
            row.sequence = np.asarray(out.sequence)[: len(row.sequence)]
            row.length += generated
            last_token = int(row.sequence[prompt_len + row.length - 1])
            row.done = (generated > 0 and last_token in searcher.end_ids) or int(out.finish) == FINISH_NONFINITE \
                or row.length >= cfg.max_new_tokens
            last, value = score(jnp.asarray(row.sequence), row.length)
            row.last, row.score = float(last), float(value)
            slots = models.reward_kind.input_slots(int(problem.rm_prefix_len), row.length, int(problem.rm_postfix_len))
            costs["official_calls"] += generated + 1
            costs["full_calls"] += generated + 2
            costs["flops"] += float(decode_flops(models.lm_config, prefix, generated))
            costs["flops"] += float(forward_flops(models.rm_config, int(slots), 0))
            costs["generated_tokens"] += generated
            costs["rollouts"] += 1
            costs["reward_calls"] += 1
        if cfg.method == PARTICLES:
            if resample:
                logits = np.asarray([r.last for r in rows], np.float32) / np.float32(cfg.pf_temperature)
                if not np.all(logits == logits[0]):
                    key = jax.random.fold_in(jax.random.fold_in(problem.key, 1), step)
                    source = np.asarray(jax.random.categorical(key, jnp.asarray(logits), shape=logits.shape))
                    rows = [dataclasses.replace(rows[int(i)]) for i in source]
        else:
            for j, row in enumerate(rows):  # finished rows are set aside; the first of equal scores stays
                if active[j] and row.done and (best is None or row.score > best[0]):
                    best = (row.score, row.sequence, row.length)
            rows = _prune(cfg, rows, [a and not r.done for a, r in zip(active, rows)])
        if not any(r.alive and not r.done for r in rows):
            break
    if best is not None:
        chosen_score, sequence, length = best
    else:
        candidates = [r.score if r.alive else -np.inf for r in rows]
        r = rows[int(np.argmax(candidates))]
        chosen_score, sequence, length = r.score, r.sequence, r.length
    tokens = [int(t) for t in sequence[prompt_len : prompt_len + length]]
    return tokens, chosen_score, costs, rows


def _prune(cfg, rows, selectable):
    """Per group (all rows for beam search; subtrees of width M for dvts): keep the best selectable rows by the
    step score, copied in turn into the group's slots; a group with none dies."""
    width = cfg.n // cfg.groups
    keep = cfg.n // cfg.width if cfg.method == BEAM else 1
    assert cfg.method in (BEAM, DVTS)
    out = []
    for g in range(cfg.groups):
        members = range(g * width, (g + 1) * width)
        ranked = sorted((i for i in members if selectable[i]), key=lambda i: (-rows[i].last, i))[:keep]
        for slot in range(width):
            if ranked:
                out.append(dataclasses.replace(rows[ranked[slot % len(ranked)]], done=False, alive=True))
            else:
                out.append(dataclasses.replace(rows[g * width + slot], alive=False))
    return out


def reference_guided(decoder_, prompt: str):
    """``(token_ids, costs)`` of reward-guided token decoding on ``prompt``: per token, the policy's logits from a
    plain forward over the whole prefix, its top k by a stable sort, one reward pass per candidate."""
    cfg, models = decoder_.config, decoder_.models
    encoded = encode_problems(decoder_.policy, decoder_.reward, [prompt], cfg.max_new_tokens)
    problems = stack_problems(models, encoded, [0], seed_key(0), cfg.max_new_tokens, queue=False)
    problem = jax.tree.map(lambda x: x[0], problems)
    prompt_ids = encoded[0][0]
    reward = jax.jit(lambda seq, n: response_reward(models, problem, seq, n, decoder_.rm_pad, cfg.max_new_tokens))
    sequence = np.asarray(problem.prompt_ids).copy()
    tokens: list[int] = []
    costs = dict(flops=float(forward_flops(models.lm_config, len(prompt_ids), 0)), reward_calls=0)
    while True:
        logits = np.asarray(decoder_.policy.logits([list(prompt_ids) + tokens])[0, -1], np.float32)
        candidates = np.argsort(-logits, kind="stable")[: cfg.k]
        total = logits[candidates].copy()
        if cfg.weight:
            values = []
            for c in candidates:
                trial = sequence.copy()
                trial[len(prompt_ids) + len(tokens)] = c
                values.append(float(reward(jnp.asarray(trial), len(tokens) + 1)))
                slots = models.reward_kind.input_slots(int(problem.rm_prefix_len), len(tokens) + 1,
                                                       int(problem.rm_postfix_len))
                costs["flops"] += float(forward_flops(models.rm_config, int(slots), 0))
                costs["reward_calls"] += 1
            total = total + np.float32(cfg.weight) * np.asarray(values, np.float32)
        token = int(candidates[int(np.argmax(total))])
        sequence[len(prompt_ids) + len(tokens)] = token
        tokens.append(token)
        if token in decoder_.end_ids or len(tokens) >= cfg.max_new_tokens:
            return tokens, costs
        costs["flops"] += float(forward_flops(models.lm_config, 1, len(prompt_ids) + len(tokens) - 1))
