"""Everything methods share: models, prompts, keys, jitted batch rollouts and batch reward scoring.

Keys: candidate j of problem i under seed s uses ``fold_in(fold_in(key(s), i), j)`` with i the problem's index in
its benchmark file, so a candidate does not depend on the batch, on ``--limit`` or on N (the first k candidates of
an N-candidate run are those of a k-candidate run). Rollouts are decoded by continuous batching (one queue per
prompt-length bucket, ``max_rows`` row slots) and reward inputs in padded length and row buckets, so a long
evaluation compiles a handful of shapes; with several devices the rows are sharded over a ``data`` mesh axis.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.evaluation.accounting import Cost, reward_cost, rollout_cost
from nabla_jax.evaluation.datasets import Benchmark, Problem, user_message
from nabla_jax.generation import (
    FINISH_NAMES,
    RolloutSpec,
    SamplingConfig,
    chat_prompt_ids,
    eos_token_ids,
)
from nabla_jax.generation.buckets import bucket_length, bucket_rows, check_lengths
from nabla_jax.generation.queue import queue_rollouts
from nabla_jax.dto.vocab_align import vocab_alignment
from nabla_jax.templates import pad_token_id, reward_pad_id, to_reward_ids
from nabla_jax.reasoner.config import NablaConfig
from nabla_jax.rewards.scoring import score_batch
from nabla_jax.sharding import params_mesh, shard_batch
from nabla_jax.seeds import seed_key


_DEFAULTS = NablaConfig()  # the decoding defaults are the ∇-Reasoner's rollout defaults


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    """Settings every method shares (part of the run's fingerprint)."""

    max_new_tokens: int = _DEFAULTS.max_new_tokens
    temperature: float = _DEFAULTS.rollout.temperature
    top_k: int = _DEFAULTS.rollout.top_k
    top_p: float = _DEFAULTS.rollout.top_p
    system: str | None = None
    instruction: str | None = None
    repetition_penalty: float = 1.0

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p, self.repetition_penalty)

    @classmethod
    def of(cls, config: NablaConfig, system: str | None = None, instruction: str | None = None) -> "DecodeSettings":
        """The decoding settings of ``config`` (its length and rollout sampling; a repetition penalty left to the
        generation config is off)."""
        rollout = config.rollout
        return cls(config.max_new_tokens, rollout.temperature, rollout.top_k, rollout.top_p, system, instruction,
                   rollout.penalty)


@dataclasses.dataclass
class Candidate:
    """One sampled response."""

    token_ids: list[int]  # generated ids, EOS included
    text: str
    answer: str | None
    finish: str
    cost: Cost  # the rollout's
    reward: float | None = None  # raw reward-model score, once scored
    reward_cost: Cost | None = None  # the scoring pass's

    def summary(self) -> dict:
        return {"answer": self.answer, "reward": self.reward, "tokens": len(self.token_ids), "finish": self.finish}


def make_mesh():
    """A 1-D ``data`` mesh over this process's devices, or None on one device. Local devices only: in a
    multi-process run each process evaluates its own batches (see :mod:`nabla_jax.evaluation.shards`)."""
    if jax.local_device_count() < 2:
        return None
    return jax.sharding.Mesh(np.asarray(jax.local_devices()), ("data",))


class EvalContext:
    """Models, benchmark, settings and the batch helpers the methods call."""

    def __init__(
        self, policy, reward, benchmark: Benchmark, settings: DecodeSettings, max_rows: int = 64, options=None
    ):
        if policy.tokenizer is None:
            raise ValueError(f"{policy.source}: the policy has no tokenizer; evaluation needs one")
        self.policy, self.reward, self.benchmark, self.settings = policy, reward, benchmark, settings
        self.grader = benchmark.grader
        self.options = dict(options or {})  # method-specific settings, e.g. {"wbon_temperature": 1.0}
        placed = params_mesh(policy.params)  # params loaded with mesh=...: keep their sharding, rows over "data"
        self.mesh = placed if placed is not None else make_mesh()
        self.max_rows = max(int(max_rows), 1)
        self.policy_params = policy.params
        if self.mesh is not None:
            devices = self._data_size()
            self.max_rows = -(-self.max_rows // devices) * devices
        if self.mesh is not None and placed is None:
            replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
            self.policy_params = jax.device_put(policy.params, replicated)
            if reward is not None:
                reward = dataclasses.replace(reward, params=jax.device_put(reward.params, replicated))
                self.reward = reward
        self.pad_id = pad_token_id(policy.config, policy.tokenizer)
        self.eos_ids = eos_token_ids(policy.config, policy.tokenizer)
        self._prompts: dict[int, list[int]] = {}
        self._templates: dict[int, tuple[list[int], list[int]]] = {}
        self._memo: dict = {}  # per batch (see clear_memo)
        self.cache: dict = {}  # per run: anything a method builds once (e.g. a decoder object)

    # ---- prompts -------------------------------------------------------------------------------------------
    def message(self, problem: Problem) -> str:
        return user_message(problem, self.settings.instruction)

    def prompt_ids(self, problem: Problem) -> list[int]:
        if problem.index not in self._prompts:
            ids = chat_prompt_ids(self.policy.tokenizer, self.message(problem), self.settings.system)
            check_lengths(self.policy.config, len(ids), self.settings.max_new_tokens, where=f"problem {problem.id!r}")
            self._prompts[problem.index] = ids
        return self._prompts[problem.index]

    def reward_template(self, problem: Problem) -> tuple[list[int], list[int]]:
        from nabla_jax.templates import reward_input_template

        if problem.index not in self._templates:
            self._templates[problem.index] = reward_input_template(self.reward, self.message(problem))
        return self._templates[problem.index]

    def bucket(self, problem: Problem) -> int:
        """The prompt-length bucket of ``problem`` (batches are formed within one)."""
        longest = self.policy.config.max_position_embeddings - self.settings.max_new_tokens
        return bucket_length(len(self.prompt_ids(problem)), maximum=longest)

    # ---- sharding ------------------------------------------------------------------------------------------
    def _data_size(self) -> int:
        return 1 if self.mesh is None else dict(self.mesh.shape).get("data", 1)

    def place(self, *arrays):
        return shard_batch(tuple(jnp.asarray(a) for a in arrays), self.mesh)

    def _row_count(self, n: int) -> int:
        rows = bucket_rows(n, self.max_rows)
        if self.mesh is not None:
            devices = self._data_size()
            rows = -(-rows // devices) * devices
        return rows

    # ---- rollouts ------------------------------------------------------------------------------------------
    def rollouts(self, rows: Sequence[tuple[Problem, int]], seed: int, sampling: SamplingConfig) -> list[Candidate]:
        """One candidate per ``(problem, sample_index)`` row, sampled with its own key, in row order."""
        spec = RolloutSpec(self.settings.max_new_tokens, sampling, self.eos_ids, (), self.pad_id)
        tokenizer, base = self.policy.tokenizer, seed_key(seed)
        index = jnp.asarray([problem.index for problem, _ in rows], jnp.uint32)
        sample = jnp.asarray([j for _, j in rows], jnp.uint32)
        keys = jax.vmap(lambda i, j: jax.random.fold_in(jax.random.fold_in(base, i), j))(index, sample)
        prompt_ids = [self.prompt_ids(problem) for problem, _ in rows]
        outputs = queue_rollouts(self.policy.config, self.policy_params, spec, prompt_ids, keys, self.max_rows,
                                 self.place, self._row_count)
        out = []
        for prompt, (ids, finish) in zip(prompt_ids, outputs):
            text = tokenizer.decode(ids, skip_special_tokens=True)
            cost = rollout_cost(self.policy.config, len(prompt), len(ids))
            out.append(Candidate(ids, text, self.grader.extract(text), FINISH_NAMES[finish], cost))
        return out

    def sample(self, problems: Sequence[Problem], seed: int, n: int) -> tuple[list[list[Candidate]], float]:
        """``n`` sampled candidates per problem and the seconds it took; memoised per (problems, seed), and a
        request for fewer candidates than already drawn returns the first ones (identical by the key rule)."""
        memo_key = (tuple(p.index for p in problems), seed, "sample")
        cached = self._memo.get(memo_key)
        if cached is None or len(cached[0][0]) < n:
            start = time.perf_counter()
            rows = [(p, j) for p in problems for j in range(n)]
            flat = self.rollouts(rows, seed, self.settings.sampling)
            cached = ([flat[i * n : (i + 1) * n] for i in range(len(problems))], time.perf_counter() - start)
            self._memo[memo_key] = cached
        return [c[:n] for c in cached[0]], cached[1]

    def score(self, problems: Sequence[Problem], seed: int, candidates: Sequence[Sequence[Candidate]],
              pool: str = "sample") -> float:
        """Fill ``candidate.reward`` and ``candidate.reward_cost`` where missing. Returns the seconds scoring
        these problems' candidates of ``pool`` has taken so far (memoised like :meth:`sample`, so every method
        sharing the candidates is charged the same time; a method scoring candidates of its own names its pool)."""
        if self.reward is None:
            raise ValueError("this method needs a reward model (--reward)")
        memo_key = (tuple(p.index for p in problems), seed, "score", pool)
        start = time.perf_counter()
        todo = [(p, c) for p, cands in zip(problems, candidates) for c in cands if c.reward is None]
        rows = [self.reward_rows(p, c.token_ids) for p, c in todo]
        scores = score_batch(
            self.reward, rows, self.reward_pad, self.max_rows, self.place, self._row_count,
            where=lambda r: f"problem {todo[r][0].id!r}",
        )
        for (problem, candidate), row, value in zip(todo, rows, scores):
            candidate.reward = float(value)
            length = self.reward.kind.input_slots(*map(len, row))
            candidate.reward_cost = reward_cost(self.reward.config, length)
        self._memo[memo_key] = self._memo.get(memo_key, 0.0) + time.perf_counter() - start
        return self._memo[memo_key]

    def reward_rows(self, problem: Problem, token_ids: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
        """``(template prefix, response, postfix)`` in reward ids: the response is the policy's ids, final EOS
        included (the official rule, and what the ∇-Reasoner scores), mapped through the vocabulary alignment."""
        prefix, postfix = self.reward_template(problem)
        return list(prefix), to_reward_ids(self.reward_index, token_ids), list(postfix)

    @functools.cached_property
    def reward_index(self) -> np.ndarray:
        return vocab_alignment(self.policy, self.reward).index

    @functools.cached_property
    def reward_pad(self) -> int:
        return reward_pad_id(self.reward.tokenizer, self.reward.config)

    def clear_memo(self) -> None:
        self._memo.clear()
