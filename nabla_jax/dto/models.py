"""The frozen models DTO differentiates through, as one pytree (configs static, arrays traced)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.dto.vocab_align import vocab_alignment
from nabla_jax.models import decoder
from nabla_jax.models.config import DecoderConfig
from nabla_jax.rewards.kinds import LIKELIHOOD, OUTCOME, PROCESS, RewardKind


@dataclasses.dataclass(frozen=True)
class ModelPair:
    """Policy and (optional) reward model, as DTO, the selection probes and the ∇-Reasoner use them.

    ``reward_index[i]`` is the reward id of policy id ``i``; ``reward_embed`` is the reward input-embedding matrix
    re-indexed to the policy vocabulary (``[V_policy, d_reward]``), which the soft one-hots multiply. Without a reward
    model the reward fields are None and DTO optimises the likelihood term alone. ``reward_kind`` says how the
    reward is read out (outcome, process or likelihood; :mod:`nabla_jax.rewards`).
    """

    lm_config: DecoderConfig
    lm_params: Any
    rm_config: DecoderConfig | None = None
    rm_params: Any = None
    reward_embed: Any = None
    reward_index: Any = None
    reward_kind: RewardKind = RewardKind()

    @property
    def has_reward(self) -> bool:
        return self.rm_config is not None

    @property
    def vocab_size(self) -> int:
        return self.lm_config.vocab_size


jax.tree_util.register_dataclass(
    ModelPair,
    data_fields=["lm_params", "rm_params", "reward_embed", "reward_index"],
    meta_fields=["lm_config", "rm_config", "reward_kind"],
)


def make_models(lm_config, lm_params, rm_config=None, rm_params=None, reward_index=None, reward_kind=None) -> ModelPair:
    """Build :class:`ModelPair`; ``reward_index`` None means the two models share the policy's id space;
    ``reward_kind`` None is an outcome reward."""
    if lm_config.is_reward_model:
        raise ValueError(f"the DTO policy must be a causal LM, got a {lm_config.architecture}")
    if rm_config is None:
        return ModelPair(lm_config, lm_params)
    reward_kind = RewardKind() if reward_kind is None else reward_kind
    check_reward_model(rm_config, reward_kind)
    if reward_index is None:
        if rm_config.vocab_size < lm_config.vocab_size:
            raise ValueError(
                f"reward vocabulary ({rm_config.vocab_size}) is smaller than the policy's ({lm_config.vocab_size}); "
                "pass reward_index (see dto_models) to align them"
            )
        reward_index = np.arange(lm_config.vocab_size, dtype=np.int32)
    reward_index = jnp.asarray(reward_index, jnp.int32)
    if reward_index.shape != (lm_config.vocab_size,):
        raise ValueError(f"reward_index must have shape ({lm_config.vocab_size},), got {reward_index.shape}")
    embed = jnp.take(decoder.embedding_matrix(rm_params), reward_index, axis=0)
    return ModelPair(lm_config, lm_params, rm_config, rm_params, embed, reward_index, reward_kind)


def check_reward_model(rm_config, kind: RewardKind) -> None:
    """Refuse a reward model whose head does not fit its kind: DTO must differentiate exactly what is scored."""
    needs = {OUTCOME: "is_classifier", PROCESS: "is_process_reward"}
    if kind.name == LIKELIHOOD:
        if rm_config.is_reward_model:
            raise ValueError(f"a likelihood reward needs a causal LM, got a {rm_config.architecture}")
    elif not getattr(rm_config, needs[kind.name]):
        raise ValueError(
            f"a {kind.name} reward cannot be read from a {rm_config.architecture}: an outcome reward needs a "
            "*ForSequenceClassification model, a process reward a *ForProcessRewardModel; use likelihood:PATH for a "
            "causal LM"
        )


def dto_models(policy, reward=None, min_vocab_overlap: float = 0.9) -> ModelPair:
    """:class:`ModelPair` from a loaded ``Policy`` and ``Reward``, aligning the vocabularies by token string.

    Build this once per (policy, reward) pair: the alignment copies the reward embedding matrix.
    """
    if reward is None:
        return make_models(policy.config, policy.params)
    alignment = vocab_alignment(policy, reward, min_vocab_overlap)
    kind = getattr(reward, "kind", None)
    return make_models(policy.config, policy.params, reward.config, reward.params, alignment.index, kind)
