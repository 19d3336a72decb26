"""Reward-guided step-level search: PRM-guided beam search, diverse verifier tree search (dvts) and particle
filtering, jitted and batched (problems as rows, beams or particles as sub-rows)."""

from nabla_jax.search.api import SearchResult, StepSearch
from nabla_jax.search.config import SEARCHES, SearchConfig

__all__ = ["SEARCHES", "SearchConfig", "SearchResult", "StepSearch"]
