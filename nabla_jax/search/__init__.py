"""Reward-guided search: PRM-guided beam search, diverse verifier tree search (dvts) and particle filtering at the
step level, reward-guided token decoding (ARGS) at the token level; jitted and batched (problems as rows, beams or
particles as sub-rows)."""

from nabla_jax.search.api import RewardGuidedDecoder, SearchResult, StepSearch
from nabla_jax.search.config import SEARCHES, GuidedConfig, SearchConfig

__all__ = ["SEARCHES", "GuidedConfig", "RewardGuidedDecoder", "SearchConfig", "SearchResult", "StepSearch"]
