"""``NablaReasoner(policy, reward, config).generate(prompts, seed=0)``: the ∇-Reasoner decoder from text."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import nabla_jax.program_cache as program_cache
from nabla_jax.dto.models import dto_models
from nabla_jax.generation.buckets import bucket_length, chunks, slot_rows
from nabla_jax.generation.prompts import eos_token_ids, stop_token_sequences
from nabla_jax.generation.rollouts import RolloutSpec
from nabla_jax.reasoner.config import NablaConfig
from nabla_jax.reasoner.loop import decode_batch
from nabla_jax.reasoner.problem import NablaProblem, checked_request, encode_problems, stack_problems
from nabla_jax.reasoner.queue import decode_queue
from nabla_jax.reasoner.state import Events, NablaState, Stats
from nabla_jax.rewards.kinds import LIKELIHOOD
from nabla_jax.reasoner.stats import Revision, problem_stats, revisions
from nabla_jax.sharding import params_mesh
from nabla_jax.seeds import seed_key
from nabla_jax.templates import pad_token_id, reward_input_template, reward_pad_id, to_reward_ids


program_cache.register_results(NablaState, Stats, Events)


@dataclasses.dataclass(frozen=True)
class NablaResult:
    prompt: str
    prompt_ids: list[int]
    token_ids: list[int]  # the response, including the EOS / stop tokens that ended it
    text: str  # the response decoded with special tokens skipped
    stats: dict  # see nabla_jax.reasoner.stats.problem_stats
    revisions: list[Revision]  # every proposal, accepted or rejected, in order


class NablaReasoner:
    """The ∇-Reasoner decoder for a policy and a reward model (vocabularies aligned by token string).

    ``generate`` puts the problems of each prompt-length bucket in one queue that ``batch_size`` row slots decode in
    one compiled program (continuous batching, :mod:`nabla_jax.reasoner.queue`); problem i's randomness comes from
    ``fold_in(key(seed), problem_ids[i])`` (default: its index), so its output does not depend on its batch.
    """

    def __init__(self, policy, reward, config: NablaConfig = NablaConfig(), min_vocab_overlap: float = 0.9):
        if not isinstance(config, NablaConfig):
            raise TypeError(f"config must be a NablaConfig, got {type(config).__name__}")
        if reward is None:
            raise ValueError("the ∇-Reasoner needs a reward model (load one with nabla_jax.load_reward)")
        if policy.tokenizer is None or reward.tokenizer is None:
            raise ValueError("the policy and the reward model need tokenizers (chat templates) to build prompts")
        if config.mix_beta is not None and reward.kind.name != LIKELIHOOD:
            raise ValueError(f"the mixture control (mix_beta) mixes in a verifier LM's next-token distribution: it "
                             f"needs a likelihood reward (likelihood:PATH), and {reward.source} is a "
                             f"{reward.kind.name} reward, which has none")
        if config.rollout.repetition_penalty is None:  # as the official rollouts: from generation_config.json
            penalty = getattr(policy, "generation", None)
            config = config.replace(rollout_repetition_penalty=(penalty.repetition_penalty if penalty else None) or 1.0)
        self.policy, self.reward, self.config = policy, reward, config
        self.models = dto_models(policy, reward, min_vocab_overlap)
        self.rm_pad = reward_pad_id(reward.tokenizer, reward.config)

    def spec(self, stop=None) -> RolloutSpec:
        policy = self.policy
        return RolloutSpec(
            self.config.max_new_tokens,
            self.config.rollout,
            eos_token_ids(policy.config, policy.tokenizer),
            stop_token_sequences(policy.tokenizer, stop),
            pad_token_id(policy.config, policy.tokenizer),
        )

    def encode(self, prompts: Sequence[str], system: str | None = None):
        """Per prompt: (policy prompt ids, reward template prefix ids, reward template postfix ids)."""
        return encode_problems(self.policy, self.reward, prompts, self.config.max_new_tokens, system)

    def generate(
        self,
        prompts: str | Sequence[str],
        seed: int = 0,
        batch_size: int = 8,
        problem_ids: Sequence[int] | None = None,
        system: str | None = None,
        stop=None,
        batch_cond: bool = True,
    ) -> list[NablaResult]:
        prompts, problem_ids = checked_request(prompts, batch_size, problem_ids)
        encoded = self.encode(prompts, system)
        spec, base = self.spec(stop), seed_key(seed)
        results: list[NablaResult | None] = [None] * len(prompts)
        buckets = [bucket_length(len(ids)) for ids, _, _ in encoded]
        size = len(prompts) if batch_cond else batch_size  # one queue per prompt bucket, or fixed batches
        for _, chunk, _ in chunks(buckets, size, row_count=lambda n: n):
            problems = self.stack_problems([encoded[i] for i in chunk], [problem_ids[i] for i in chunk], base, batch_cond)
            began = time.perf_counter()
            state = jax.block_until_ready(self._decode(problems, len(chunk), spec, batch_size, batch_cond))
            wall = time.perf_counter() - began
            state = jax.device_get(state)
            for row, i in enumerate(chunk):
                results[i] = self._result(prompts[i], encoded[i][0], state, row, wall / len(chunk), wall)
        return results

    def stack_problems(self, encoded, problem_ids, base_key, queue: bool = True) -> NablaProblem:
        """:func:`~nabla_jax.reasoner.problem.stack_problems` at this decoder's ``max_new_tokens``."""
        return stack_problems(self.models, encoded, problem_ids, base_key, self.config.max_new_tokens, queue)

    def _decode(self, problems: NablaProblem, count: int, spec, batch_size: int, batch_cond: bool) -> NablaState:
        """Final states ``[Q]``: a queue decoded by ``batch_size`` row slots, or (``batch_cond=False``) the vmapped
        one-problem loop over a batch of at most ``batch_size``."""
        config = self.config
        mesh = params_mesh(self.models.lm_params)
        if config.carry_prefix and mesh is not None and mesh.size > 1:
            # on a multi-device mesh the prefix is rebuilt: the carried cache's extension loop deadlocked XLA CPU's
            # collectives on an 8-device data/fsdp/tensor mesh (tests/sharding/test_sharding.py); the records are the same
            config = dataclasses.replace(config, carry_prefix=False)
        if not batch_cond:
            return decode_batch(self.models, config, spec, self.rm_pad, problems, batch_cond=False)
        rows = slot_rows(count, batch_size)
        static = dict(cfg=config, spec=spec, rm_pad=self.rm_pad, rows=rows)
        return program_cache.call(decode_queue, static, models=self.models, problems=problems, count=jnp.int32(count))

    def _result(self, prompt, prompt_ids, state: NablaState, row: int, share: float, wall: float) -> NablaResult:
        end = int(state.past_len[row])
        token_ids = [int(t) for t in np.asarray(state.sequence[row, len(prompt_ids) : end])]
        return NablaResult(
            prompt=prompt,
            prompt_ids=list(prompt_ids),
            token_ids=token_ids,
            text=self.policy.tokenizer.decode(token_ids, skip_special_tokens=True),
            stats=problem_stats(self.models, state, row, share, wall),
            revisions=revisions(state, row),
        )

    def step_scores(self, result: NablaResult) -> list[float]:
        """What the reward reads from ``result``'s response, in order: a PRM's per-step probabilities, a likelihood
        reward's per-token log-probabilities, an outcome classifier's one score."""
        from nabla_jax.rewards.scoring import response_step_scores

        prefix, postfix = reward_input_template(self.reward, result.prompt)
        response = to_reward_ids(self.models.reward_index, result.token_ids)
        return response_step_scores(self.reward, prefix, response, postfix, self.rm_pad)
