"""``StepSearch(policy, prm, config).generate(prompts, seed=0)``: PRM-guided beam search, diverse verifier tree
search and particle filtering from text."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import numpy as np

import nabla_jax.program_cache as program_cache
from nabla_jax.dto.models import dto_models
from nabla_jax.generation.buckets import bucket_length, chunks
from nabla_jax.generation.prompts import eos_token_ids
from nabla_jax.generation.rollouts import RolloutSpec
from nabla_jax.reasoner.problem import checked_request, encode_problems, stack_problems
from nabla_jax.rewards.kinds import PROCESS
from nabla_jax.models.kv_cache import KVCache
from nabla_jax.search.config import GuidedConfig, SearchConfig
from nabla_jax.search.guided import GuidedState, guided_batch
from nabla_jax.search.loop import Answer, Best, Costs, SearchState, search_batch
from nabla_jax.seeds import seed_key
from nabla_jax.templates import pad_token_id, reward_pad_id


@dataclasses.dataclass(frozen=True)
class SearchResult:
    prompt: str
    prompt_ids: list[int]
    token_ids: list[int]  # the chosen response, including the token that ended it
    text: str
    score: float | None  # its reward (a search's PRM aggregate over its steps; None where none was computed)
    stats: dict  # costs (official_calls, full_calls, flops, generated_tokens, rollouts, reward_calls), steps, ...


program_cache.register_results(SearchState, Best, Costs, Answer, GuidedState, KVCache)


def step_end_ids(models) -> tuple[int, ...]:
    """The policy ids whose reward id ends a step (the PRM's step split, through the vocabulary alignment)."""
    ends = np.asarray(models.reward_kind.step_end_ids, np.int64)
    index = np.asarray(models.reward_index)
    return tuple(int(i) for i in np.nonzero(np.isin(index, ends))[0])


def decode_in_batches(decoder, prompts, seed, batch_size, problem_ids, system, run, result) -> list:
    """``result(prompt, prompt_ids, output, row, seconds)`` for each prompt: the prompts encoded, cut into fixed
    batches of at most ``batch_size`` within a prompt-length bucket, each decoded by ``run(problems)``."""
    prompts, problem_ids = checked_request(prompts, batch_size, problem_ids)
    new_tokens = decoder.config.max_new_tokens
    encoded = encode_problems(decoder.policy, decoder.reward, prompts, new_tokens, system)
    base = seed_key(seed)
    results = [None] * len(prompts)
    buckets = [bucket_length(len(ids)) for ids, _, _ in encoded]
    for _, chunk, _ in chunks(buckets, batch_size, row_count=lambda n: n):
        problems = stack_problems(decoder.models, [encoded[i] for i in chunk], [problem_ids[i] for i in chunk], base,
                                  new_tokens, queue=False)
        began = time.perf_counter()
        output = jax.block_until_ready(run(problems))
        seconds = (time.perf_counter() - began) / len(chunk)
        output = jax.device_get(output)
        for row, i in enumerate(chunk):
            results[i] = result(prompts[i], encoded[i][0], output, row, seconds)
    return results


class StepSearch:
    """A step-level search for a policy and a process reward model (vocabularies aligned by token string).

    Problems are decoded in fixed batches, ``n`` rows each; problem i's randomness comes from
    ``fold_in(key(seed), problem_ids[i])``, so its result does not depend on its batch."""

    def __init__(self, policy, reward, config: SearchConfig, min_vocab_overlap: float = 0.9):
        if not isinstance(config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
        if reward is None or reward.kind.name != PROCESS:
            kind = "no" if reward is None else f"{reward.source}, a {reward.kind.name}"
            raise ValueError(f"{config.method}@{config.n} selects by step scores: it needs a process reward model "
                             f"(a PRM), and was given {kind} reward")
        if policy.tokenizer is None or reward.tokenizer is None:
            raise ValueError("the policy and the reward model need tokenizers (chat templates) to build prompts")
        self.policy, self.reward, self.config = policy, reward, config
        self.models = dto_models(policy, reward, min_vocab_overlap)
        self.rm_pad = reward_pad_id(reward.tokenizer, reward.config)
        steps = step_end_ids(self.models)
        if not steps:
            raise ValueError(f"{reward.source}: no policy token ends a step of the PRM")
        self.end_ids = eos_token_ids(policy.config, policy.tokenizer)
        stops = tuple(sorted(set(self.end_ids) | set(steps)))
        self.spec = RolloutSpec(config.max_new_tokens, config.sampling, stops, (),
                                pad_token_id(policy.config, policy.tokenizer), keep_latents=False)

    def generate(self, prompts: str | Sequence[str], seed: int = 0, batch_size: int = 8,
                 problem_ids: Sequence[int] | None = None, system: str | None = None) -> list[SearchResult]:
        def run(problems):
            static = dict(config=self.config, spec=self.spec, end_ids=self.end_ids, rm_pad=self.rm_pad)
            return program_cache.call(search_batch, static, models=self.models, problems=problems)
        return decode_in_batches(self, prompts, seed, batch_size, problem_ids, system, run, self._result)

    def _result(self, prompt, prompt_ids, output, row: int, wall: float) -> SearchResult:
        state, answer = output
        start, length = len(prompt_ids), int(answer.length[row])
        token_ids = [int(t) for t in np.asarray(answer.sequence[row, start : start + length])]
        stats = {name: float(getattr(state.cost, name)[row]) for name in state.cost._fields}
        stats.update(steps=int(state.step[row]), finished=bool(state.best.found[row]) or bool(state.done[row].any()),
                     nonfinite=int(state.nonfinite[row]), wall_time_s=wall)
        return SearchResult(prompt, list(prompt_ids), token_ids,
                            self.policy.tokenizer.decode(token_ids, skip_special_tokens=True),
                            float(answer.score[row]), stats)


class RewardGuidedDecoder:
    """Reward-guided token decoding (ARGS) for a policy and any reward model: at each token the policy's ``k`` most
    likely tokens are rescored by ``logit + weight * reward``."""

    def __init__(self, policy, reward, config: GuidedConfig, min_vocab_overlap: float = 0.9):
        if not isinstance(config, GuidedConfig):
            raise TypeError(f"config must be a GuidedConfig, got {type(config).__name__}")
        if reward is None:
            raise ValueError("reward-guided decoding needs a reward model")
        if policy.tokenizer is None or reward.tokenizer is None:
            raise ValueError("the policy and the reward model need tokenizers (chat templates) to build prompts")
        self.policy, self.reward, self.config = policy, reward, config
        self.models = dto_models(policy, reward, min_vocab_overlap)
        self.rm_pad = reward_pad_id(reward.tokenizer, reward.config)
        self.end_ids = eos_token_ids(policy.config, policy.tokenizer)

    def generate(self, prompts: str | Sequence[str], seed: int = 0, batch_size: int = 8,
                 problem_ids: Sequence[int] | None = None, system: str | None = None) -> list[SearchResult]:
        """Deterministic: ``seed`` and ``problem_ids`` are accepted for the common interface and change nothing."""
        def run(problems):
            static = dict(config=self.config, end_ids=self.end_ids, rm_pad=self.rm_pad)
            return program_cache.call(guided_batch, static, models=self.models, problems=problems)
        return decode_in_batches(self, prompts, seed, batch_size, problem_ids, system, run, self._result)

    def _result(self, prompt, prompt_ids, state, row: int, wall: float) -> SearchResult:
        start, length = len(prompt_ids), int(state.length[row])
        token_ids = [int(t) for t in np.asarray(state.sequence[row, start : start + length])]
        reward_calls = int(state.reward_calls[row])
        stats = dict(official_calls=float(length + reward_calls), full_calls=float(length + 1 + reward_calls),
                     flops=float(state.flops[row]), generated_tokens=float(length), rollouts=1.0,
                     reward_calls=float(reward_calls), steps=length, finished=True,
                     nonfinite=int(state.nonfinite[row]), wall_time_s=wall)
        return SearchResult(prompt, list(prompt_ids), token_ids,
                            self.policy.tokenizer.decode(token_ids, skip_special_tokens=True), None, stats)
