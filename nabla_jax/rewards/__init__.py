"""Rewards: one interface for outcome classifiers, process reward models, likelihood rewards and judges.

Every reward takes the same inputs, built by :func:`nabla_jax.rewards.inputs.reward_input` from (template,
response ids), and is read out by :mod:`nabla_jax.rewards.readout`; DTO, the acceptance test, best-of-N and the
evaluation records use them without knowing the kind. ``load_reward_model(spec)`` loads one by name:

- ``PATH``: a ``*ForSequenceClassification`` checkpoint (outcome) or a ``*ForProcessRewardModel`` one (process);
- ``likelihood:PATH``: a causal LM's mean (clipped) token log-probability of the response;
- ``judge:PATH``: a causal LM's Yes/No log-odds about the response (an outcome reward on its own trunk).
"""

from nabla_jax.rewards.kinds import AGGREGATES, KINDS, LIKELIHOOD, OUTCOME, PROCESS, RewardKind

_LAZY = {
    "load_reward_model": "loaders",
    "judge_reward": "loaders",
    "likelihood_reward": "loaders",
    "process_kind": "loaders",
    "JUDGE_PREFIX": "loaders",
    "LIKELIHOOD_PREFIX": "loaders",
    "judge_template": "loaders",
    "score_responses": "scoring",
    "response_step_scores": "scoring",
}


def __getattr__(name):
    # the loaders need nabla_jax.loading, which itself imports the reward kinds: load them on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nabla_jax.rewards.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nabla_jax.rewards' has no attribute {name!r}")


__all__ = ["AGGREGATES", "KINDS", "LIKELIHOOD", "OUTCOME", "PROCESS", "RewardKind", *_LAZY]
