"""The ∇-Reasoner decoder: token selection, DTO, resampling, rejection sampling and rollout reuse as one jitted,
batched state machine."""

from nabla_jax.reasoner.api import NablaReasoner, NablaResult
from nabla_jax.reasoner.config import NablaConfig

__all__ = ["NablaConfig", "NablaReasoner", "NablaResult"]
