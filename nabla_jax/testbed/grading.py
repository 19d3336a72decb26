"""The testbed's plug-in for the evaluation: its benchmark file and its strict grader, added by :func:`register`
(which the package root calls, so ``--benchmark testbed`` is always known)."""

from __future__ import annotations

from nabla_jax.evaluation.datasets import register_benchmark
from nabla_jax.evaluation.grading import Grader, numbers_equal, register_grader
from nabla_jax.testbed import TEST_JSONL
from nabla_jax.testbed.task import extract_answer


def testbed_answer(text: str) -> str | None:
    """The testbed's strict rule: the integer on a final ``#### N`` line, else no answer."""
    value = extract_answer(text)
    return None if value is None else str(value)


GRADER = Grader("testbed", testbed_answer, numbers_equal)


def register() -> None:
    """Add the testbed's grader and benchmark (exact integer answers on a final "#### N" line) to the registries."""
    register_grader(GRADER)
    register_benchmark("testbed", TEST_JSONL, grader="testbed")
