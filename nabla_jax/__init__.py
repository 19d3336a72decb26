"""nabla-jax: the nabla-Reasoner (test-time gradient descent over token logits) in JAX."""

from nabla_jax.loading import Policy, Reward, load_policy, load_reward
from nabla_jax.models.config import DecoderConfig

__all__ = ["DecoderConfig", "Policy", "Reward", "load_policy", "load_reward"]
