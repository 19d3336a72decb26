"""The frozen models DTO differentiates through, as one pytree (configs static, arrays traced)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.dto.vocab_align import align_vocab, reward_pad_id
from nabla_jax.models import decoder
from nabla_jax.models.config import DecoderConfig


@dataclasses.dataclass(frozen=True)
class DTOModels:
    """Policy and (optional) reward model.

    ``reward_index[i]`` is the reward id of policy id ``i``; ``reward_embed`` is the reward input-embedding matrix
    re-indexed to the policy vocabulary (``[V_policy, d_reward]``), which the soft one-hots multiply. Without a reward
    model the reward fields are None and DTO optimises the likelihood term alone.
    """

    lm_config: DecoderConfig
    lm_params: Any
    rm_config: DecoderConfig | None = None
    rm_params: Any = None
    reward_embed: Any = None
    reward_index: Any = None

    @property
    def has_reward(self) -> bool:
        return self.rm_config is not None

    @property
    def vocab_size(self) -> int:
        return self.lm_config.vocab_size


jax.tree_util.register_dataclass(
    DTOModels,
    data_fields=["lm_params", "rm_params", "reward_embed", "reward_index"],
    meta_fields=["lm_config", "rm_config"],
)


def make_models(lm_config, lm_params, rm_config=None, rm_params=None, reward_index=None) -> DTOModels:
    """Build :class:`DTOModels`; ``reward_index`` None means the two models share the policy's id space."""
    if lm_config.is_classifier:
        raise ValueError("the DTO policy must be a causal LM, got a sequence classifier")
    if rm_config is None:
        return DTOModels(lm_config, lm_params)
    if not rm_config.is_classifier:
        raise ValueError("the DTO reward model must be a sequence classifier, got a causal LM")
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
    return DTOModels(lm_config, lm_params, rm_config, rm_params, embed, reward_index)


def dto_models(policy, reward=None, min_vocab_overlap: float = 0.9) -> DTOModels:
    """:class:`DTOModels` from a loaded ``Policy`` and ``Reward``, aligning the vocabularies by token string.

    Build this once per (policy, reward) pair: the alignment copies the reward embedding matrix.
    """
    if reward is None:
        return make_models(policy.config, policy.params)
    if policy.tokenizer is None or reward.tokenizer is None:
        raise ValueError("vocabulary alignment needs both tokenizers; the policy or reward was loaded without one")
    alignment = align_vocab(
        policy.tokenizer,
        reward.tokenizer,
        policy.config.vocab_size,
        reward.config.vocab_size,
        reward_pad_id(reward.tokenizer, reward.config),
        min_vocab_overlap,
    )
    return make_models(policy.config, policy.params, reward.config, reward.params, alignment.index)
