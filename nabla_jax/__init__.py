"""nabla-jax: the nabla-Reasoner (test-time gradient descent over token logits) in JAX."""

from nabla_jax.dto import DTOConfig, DTOResult, dto_models, dto_optimize
from nabla_jax.generation import GenerationResult, SamplingConfig, generate
from nabla_jax.loading import Policy, load_policy
from nabla_jax.models.config import DecoderConfig
from nabla_jax.reasoner import NablaConfig, NablaReasoner, NablaResult
from nabla_jax.rewards import Reward, load_reward
from nabla_jax.testbed import grading as _testbed_grading

# the composition root: plug-ins are added to the registries here, not by importing them
_testbed_grading.register()

__all__ = [
    "DTOConfig",
    "DTOResult",
    "dto_models",
    "dto_optimize",
    "DecoderConfig",
    "GenerationResult",
    "NablaConfig",
    "NablaReasoner",
    "NablaResult",
    "Policy",
    "Reward",
    "SamplingConfig",
    "generate",
    "load_policy",
    "load_reward",
]
