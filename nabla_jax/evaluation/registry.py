"""The evaluation methods by name: the baselines, the ∇-Reasoner's and the step-level searches, plus any a user
registers."""

from __future__ import annotations

from nabla_jax.evaluation.methods import BASELINES, MethodSpec
from nabla_jax.evaluation.nabla_methods import NABLA_METHODS
from nabla_jax.evaluation.search_methods import SEARCH_METHODS

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (*BASELINES, *NABLA_METHODS, *SEARCH_METHODS)}


def register_method(spec: MethodSpec) -> None:
    """Make ``spec`` available to ``nabla-jax eval --method`` and :func:`nabla_jax.evaluation.run_eval`."""
    METHODS[spec.name] = spec
