"""Reward models by name: a sequence-classifier checkpoint (anything ``load_reward`` takes)."""

from __future__ import annotations

from nabla_jax.loading import load_reward


def load_reward_model(spec: str, policy=None):
    """The reward model named by ``spec``. ``judge:...`` (the policy as its own verifier) is not available in this
    version and is refused with a clear error."""
    if spec.startswith("judge:"):
        raise ValueError(f"reward {spec!r}: judge rewards are not implemented yet; pass a sequence-classifier checkpoint")
    return load_reward(spec)
