"""The testbed registers itself with the evaluation: its benchmark file and its strict grader (imported by
:mod:`nabla_jax.evaluation`, so ``--benchmark testbed`` is always known)."""

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
register_grader(GRADER)
# exact integer answers on a final "#### N" line
register_benchmark("testbed", TEST_JSONL, grader="testbed")
