"""The testbed's grading: strict and exact on the final ``#### N`` line. (The shipped checkpoints' parity with
transformers is in tests/testbed/test_testbed.py.)"""

from nabla_jax.evaluation.grading import get_grader
from nabla_jax.testbed.task import extract_answer


def test_testbed_grader_is_strict_and_exact():
    grader = get_grader("testbed")
    assert grader.grade("92-48=44\n44-12=32\n#### 32", "32") == ("32", True)
    assert grader.grade("#### 31", "32") == ("31", False)
    assert grader.grade("the answer is 32", "32") == (None, False)  # no final "#### N" line: no answer
    assert extract_answer("#### -5") == -5
