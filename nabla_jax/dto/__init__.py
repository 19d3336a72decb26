"""DTO (differentiable textual optimisation): test-time gradient descent on the ahead tokens' logits or latents.

Entry point: :func:`dto_optimize`. Pure functions for the decoding loop: :func:`build_prefix_cache`,
:func:`dto_init`, :func:`dto_step` / :func:`dto_run` (batched) and their ``*_single`` forms, :func:`selection_probes`,
:func:`token_confidence`.
"""

from nabla_jax.dto.api import DTOResult, NonFiniteLossError, dto_optimize, run_dto_batch
from nabla_jax.dto.config import DTOConfig
from nabla_jax.dto.loop import DTOState, dto_init, dto_run, dto_step, dto_step_single
from nabla_jax.dto.loss import LossParts, loss_and_onehot_grad, onehot_loss
from nabla_jax.dto.models import ModelPair, dto_models, make_models
from nabla_jax.dto.prefix_cache import PrefixCache, build_prefix_cache
from nabla_jax.dto.probes import Probes, selection_probes, token_confidence
from nabla_jax.dto.problem import DTOProblem, make_problem, stack
from nabla_jax.dto.straight_through import straight_through_onehot
from nabla_jax.templates import chat_prompt_ids, reward_template_ids
from nabla_jax.dto.vocab_align import VocabAlignment, align_vocab

__all__ = [
    "DTOConfig",
    "ModelPair",
    "DTOProblem",
    "DTOResult",
    "DTOState",
    "LossParts",
    "NonFiniteLossError",
    "PrefixCache",
    "Probes",
    "VocabAlignment",
    "align_vocab",
    "build_prefix_cache",
    "dto_init",
    "dto_models",
    "dto_optimize",
    "dto_run",
    "dto_step",
    "dto_step_single",
    "loss_and_onehot_grad",
    "make_models",
    "make_problem",
    "onehot_loss",
    "chat_prompt_ids",
    "reward_template_ids",
    "run_dto_batch",
    "selection_probes",
    "stack",
    "straight_through_onehot",
    "token_confidence",
]
