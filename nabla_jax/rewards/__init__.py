"""Rewards: one interface for outcome classifiers, process reward models, likelihood rewards and judges.

Every reward takes the same inputs, built by :func:`nabla_jax.rewards.inputs.reward_input` from (template,
response ids), and is read out by :mod:`nabla_jax.rewards.readout`; DTO, the acceptance test, best-of-N and the
evaluation records use them without knowing the kind. ``load_reward(spec)`` loads one by name:

- ``PATH``: a ``*ForSequenceClassification`` checkpoint (outcome) or a ``*ForProcessRewardModel`` one (process);
- ``likelihood:PATH``: a causal LM's mean (clipped) token log-probability of the response;
- ``judge:PATH``: a causal LM's Yes/No log-odds about the response (an outcome reward on its own trunk).
"""

from nabla_jax.rewards.kinds import AGGREGATES, KINDS, LIKELIHOOD, OUTCOME, PROCESS, RewardKind
from nabla_jax.rewards.loaders import (
    judge_reward,
    judge_template,
    likelihood_reward,
    load_reward,
    process_kind,
)
from nabla_jax.rewards.model import Reward
from nabla_jax.rewards.scoring import response_step_scores, score_batch

__all__ = [
    "AGGREGATES", "KINDS", "LIKELIHOOD", "OUTCOME", "PROCESS", "Reward", "RewardKind", "judge_reward",
    "judge_template", "likelihood_reward", "load_reward", "process_kind", "response_step_scores", "score_batch",
]
