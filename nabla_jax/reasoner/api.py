"""``NablaReasoner(policy, reward, config).generate(prompts, seed=0)``: the ∇-Reasoner decoder from text."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.dto.models import dto_models
from nabla_jax.generation.buckets import bucket_length, chunks, round_up
from nabla_jax.generation.prompts import eos_token_ids, stop_token_sequences
from nabla_jax.generation.rollouts import RolloutSpec
from nabla_jax.reasoner.config import NablaConfig
from nabla_jax.reasoner.loop import decode_batch
from nabla_jax.reasoner.problem import make_nabla_problem
from nabla_jax.reasoner.stats import Revision, problem_stats, revisions
from nabla_jax.sharding import params_mesh, shard_batch
from nabla_jax.seeds import seed_key
from nabla_jax.templates import chat_prompt_ids, pad_token_id, reward_input_template, reward_pad_id, to_reward_ids


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

    ``generate`` runs batches of ``batch_size`` problems as one compiled program each; problem i's randomness comes
    from ``fold_in(key(seed), problem_ids[i])`` (default: its index), so its output does not depend on its batch.
    """

    def __init__(self, policy, reward, config: NablaConfig = NablaConfig(), min_vocab_overlap: float = 0.9):
        if not isinstance(config, NablaConfig):
            raise TypeError(f"config must be a NablaConfig, got {type(config).__name__}")
        if reward is None:
            raise ValueError("the ∇-Reasoner needs a reward model (load one with nabla_jax.load_reward)")
        if policy.tokenizer is None or reward.tokenizer is None:
            raise ValueError("the policy and the reward model need tokenizers (chat templates) to build prompts")
        if config.rollout_repetition_penalty is None:  # as the official rollouts: from generation_config.json
            penalty = getattr(policy, "generation", None)
            config = config.replace(rollout_repetition_penalty=(penalty.repetition_penalty if penalty else None) or 1.0)
        self.policy, self.reward, self.config = policy, reward, config
        self.models = dto_models(policy, reward, min_vocab_overlap)
        self.rm_pad = reward_pad_id(reward.tokenizer, reward.config)

    def spec(self, stop=None) -> RolloutSpec:
        policy = self.policy
        return RolloutSpec(
            self.config.max_new_tokens,
            self.config.rollout_sampling,
            eos_token_ids(policy.config, policy.tokenizer),
            stop_token_sequences(policy.tokenizer, stop),
            pad_token_id(policy.config, policy.tokenizer),
        )

    def encode(self, prompts: Sequence[str], system: str | None = None):
        """Per prompt: (policy prompt ids, reward template prefix ids, reward template postfix ids)."""
        cfg = self.config
        encoded = []
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt:
                raise ValueError(f"prompt {i} must be a non-empty string")
            ids = chat_prompt_ids(self.policy.tokenizer, prompt, system)
            limit = self.policy.config.max_position_embeddings
            if len(ids) + cfg.max_new_tokens > limit:
                raise ValueError(
                    f"prompt {i} has {len(ids)} tokens; with max_new_tokens={cfg.max_new_tokens} it exceeds the "
                    f"policy's context of {limit} positions"
                )
            prefix, postfix = reward_input_template(self.reward, prompt)
            reward_limit = self.reward.config.max_position_embeddings
            if self.reward.kind.input_slots(len(prefix), cfg.max_new_tokens, len(postfix)) > reward_limit:
                raise ValueError(
                    f"prompt {i}: the reward template ({len(prefix) + len(postfix)} tokens) plus max_new_tokens="
                    f"{cfg.max_new_tokens} exceeds the reward model's context of {reward_limit} positions"
                )
            encoded.append((ids, prefix, postfix))
        return encoded

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
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("no prompts given")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
        problem_ids = list(range(len(prompts))) if problem_ids is None else [int(i) for i in problem_ids]
        if len(problem_ids) != len(prompts):
            raise ValueError(f"{len(problem_ids)} problem_ids for {len(prompts)} prompts")
        encoded = self.encode(prompts, system)
        cfg, spec = self.config, self.spec(stop)
        base = seed_key(seed)
        results: list[NablaResult | None] = [None] * len(prompts)
        for _, chunk, rows in chunks([0] * len(prompts), batch_size):
            sizes = (
                bucket_length(max(len(encoded[i][0]) for i in rows)) + cfg.max_new_tokens,
                round_up(max(len(encoded[i][1]) for i in rows), 32),
                round_up(max(len(encoded[i][2]) for i in rows), 8),
            )
            problems = [make_nabla_problem(*encoded[i], sizes, jax.random.fold_in(base, problem_ids[i])) for i in rows]
            batch = jax.tree.map(lambda *leaves: jnp.stack(leaves), *problems)
            batch = shard_batch(batch, params_mesh(self.models.lm_params))
            began = time.perf_counter()
            state = jax.block_until_ready(decode_batch(self.models, cfg, spec, self.rm_pad, batch, batch_cond))
            wall = time.perf_counter() - began
            state = jax.device_get(state)
            for row, i in enumerate(chunk):
                prompt_len = len(encoded[i][0])
                end = int(state.past_len[row])
                token_ids = [int(t) for t in np.asarray(state.sequence[row, prompt_len:end])]
                stats = problem_stats(self.models, state, row, wall / len(chunk), wall)
                results[i] = NablaResult(
                    prompt=prompts[i],
                    prompt_ids=list(encoded[i][0]),
                    token_ids=token_ids,
                    text=self.policy.tokenizer.decode(token_ids, skip_special_tokens=True),
                    stats=stats,
                    revisions=revisions(state, row),
                )
        return results

    def step_scores(self, result: NablaResult) -> list[float]:
        """What the reward reads from ``result``'s response, in order: a PRM's per-step probabilities, a likelihood
        reward's per-token log-probabilities, an outcome classifier's one score."""
        from nabla_jax.rewards.scoring import response_step_scores

        prefix, postfix = reward_input_template(self.reward, result.prompt)
        response = to_reward_ids(self.models.reward_index, result.token_ids)
        return response_step_scores(self.reward, prefix, response, postfix, self.rm_pad)
