"""Benchmark evaluation: datasets, grading, methods (greedy, self-consistency, best-of-N, weighted best-of-N and,
when present, the ∇-Reasoner), cost accounting, resumable JSONL records, metrics and reports.

Entry points: ``nabla-jax eval`` / ``nabla-jax report`` (:mod:`nabla_jax.commands.eval`,
:mod:`nabla_jax.commands.report`), or :func:`run_eval` and :func:`build_report` from Python.
"""

from nabla_jax.evaluation.accounting import Cost, reward_cost, rollout_cost
from nabla_jax.evaluation.context import Candidate, DecodeSettings, EvalContext
from nabla_jax.evaluation.datasets import (
    BENCHMARKS,
    Benchmark,
    DatasetError,
    Problem,
    load_benchmark,
    register_benchmark,
)
from nabla_jax.evaluation.grading import GRADERS, Grader, extract_answer, get_grader, math_equivalent, register_grader
from nabla_jax.evaluation.methods import MethodSpec, Outcome, method_key, vote
from nabla_jax.evaluation.registry import METHODS, register_method
from nabla_jax.evaluation.records import FingerprintMismatch, RecordsError, RecordStore
from nabla_jax.evaluation.report import build_report
from nabla_jax.evaluation.runner import evaluate, fingerprint, parse_methods, run_eval

__all__ = [
    "BENCHMARKS", "GRADERS", "METHODS", "Benchmark", "Candidate", "Cost", "DatasetError", "DecodeSettings",
    "EvalContext", "FingerprintMismatch", "Grader", "MethodSpec", "Outcome", "Problem", "RecordStore",
    "RecordsError", "build_report", "evaluate", "extract_answer", "fingerprint", "get_grader", "load_benchmark",
    "math_equivalent", "method_key", "parse_methods", "register_benchmark", "register_grader",
    "register_method", "reward_cost", "rollout_cost", "run_eval", "vote",
]
