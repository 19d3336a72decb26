"""Re-index a reward model's input embeddings to the policy vocabulary by token string.

DTO feeds the reward model ``y @ E_rm_aligned`` where ``y`` is a (straight-through) one-hot over the *policy*
vocabulary, so row ``i`` of ``E_rm_aligned`` must be the reward model's embedding of policy token ``i``. As in the
official code, a policy token the reward tokenizer does not know maps to the reward pad id. Unlike the official code,
which only does this when the vocabularies differ, we always go through the map, and we refuse when too few policy
tokens are matched for the reward to mean anything.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nabla_jax.templates import reward_pad_id, tokenizer_name


@dataclasses.dataclass(frozen=True, eq=False)
class VocabAlignment:
    """``index[i]`` is the reward id of policy id ``i`` (``len(index)`` = the policy's logits width)."""

    index: np.ndarray
    matched_fraction: float
    identical: bool


def align_vocab(
    policy_tokenizer,
    reward_tokenizer,
    policy_vocab_size: int,
    reward_vocab_size: int,
    pad_id: int,
    min_overlap: float = 0.9,
) -> VocabAlignment:
    """Map every policy id in ``[0, policy_vocab_size)`` to a reward id by token string.

    Ids past the policy tokenizer (padding rows of the embedding matrix) map to ``pad_id``. Raises ValueError when
    the fraction of policy tokenizer tokens found in the reward vocabulary is below ``min_overlap``.
    """
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be in [0, 1], got {min_overlap}")
    if not 0 <= pad_id < reward_vocab_size:
        raise ValueError(f"reward pad id {pad_id} outside the reward vocabulary [0, {reward_vocab_size})")
    policy_vocab = policy_tokenizer.get_vocab()
    reward_vocab = reward_tokenizer.get_vocab()
    index = np.full((policy_vocab_size,), pad_id, np.int32)
    matched = 0
    for token, policy_id in policy_vocab.items():
        reward_id = reward_vocab.get(token)
        if reward_id is not None and reward_id < reward_vocab_size:
            matched += 1
            if policy_id < policy_vocab_size:
                index[policy_id] = reward_id
    fraction = matched / max(1, len(policy_vocab))
    if fraction < min_overlap:
        raise ValueError(
            f"policy tokenizer {tokenizer_name(policy_tokenizer)!r} and reward tokenizer "
            f"{tokenizer_name(reward_tokenizer)!r} share only {matched} of {len(policy_vocab)} policy tokens "
            f"({fraction:.1%} < min_overlap {min_overlap:.0%}); a reward over soft policy tokens would be meaningless"
        )
    return VocabAlignment(index=index, matched_fraction=fraction, identical=policy_vocab == reward_vocab)


def vocab_alignment(policy, reward, min_overlap: float = 0.9) -> VocabAlignment:
    """The alignment of a loaded policy's vocabulary to a loaded reward model's (both need tokenizers)."""
    if policy.tokenizer is None or reward.tokenizer is None:
        raise ValueError("vocabulary alignment needs both tokenizers; the policy or reward was loaded without one")
    return align_vocab(
        policy.tokenizer,
        reward.tokenizer,
        policy.config.vocab_size,
        reward.config.vocab_size,
        reward_pad_id(reward.tokenizer, reward.config),
        min_overlap,
    )
