"""Answer extraction and grading on hand-written responses; answer-class votes."""

import pytest

from nabla_jax.evaluation.grading import extract_answer, get_grader, last_boxed, math_equivalent
from nabla_jax.evaluation.methods import vote

MATH = get_grader("math")
GSM8K = get_grader("gsm8k")


@pytest.mark.parametrize(
    "response, expected",
    [
        ("so the result is \\boxed{\\frac{3}{4}}.", "\\frac{3}{4}"),
        ("first \\boxed{1}, then corrected: \\boxed{2}", "2"),
        ("nested \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
        ("\\fbox{7}", "7"),
        ("$\\boxed 5$", "5"),
        ("complete \\boxed{3} then cut off \\boxed{\\frac{1}{", "3"),  # truncated last box: the complete one
        ("Thus, the answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("The final answer is: 12", "12"),
        ("we get 3 apples and then 1,234 pears", "1234"),
        ("no numbers at all", None),
        ("", None),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_last_boxed_none_without_box():
    assert last_boxed("the answer is 4") is None


@pytest.mark.parametrize(
    "response, gold",
    [
        ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}"),  # equivalent fractions
        ("\\boxed{0.5}", "\\frac12"),  # decimal against LaTeX fraction
        ("\\boxed{\\dfrac{3}{6}}", "\\frac{1}{2}"),
        ("\\boxed{(3,\\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),  # a tuple in another LaTeX form
        ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\sqrt{2}/2"),
        ("\\boxed{1+x^2}", "x^2+1"),
        ("\\boxed{x = 5}", "5"),
        ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
        ("The answer is 18.", "18"),
        ("\\boxed{\\{2, 1\\}}", "\\{1,2\\}"),
    ],
)
def test_math_grader_accepts_equivalent_forms(response, gold):
    answer, correct = MATH.grade(response, gold)
    assert correct, (response, answer, gold)


@pytest.mark.parametrize(
    "response, gold",
    [
        ("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}"),
        ("\\boxed{[1,2)}", "(1,2]"),
        ("I do not know.", "5"),  # no answer
        ("\\boxed{}", "5"),
        ("\\boxed{-5}", "5"),
    ],
)
def test_math_grader_rejects(response, gold):
    assert not MATH.grade(response, gold)[1]


def test_math_equivalent_none_is_wrong():
    assert not math_equivalent(None, "3")
    assert not math_equivalent("   ", "3")


@pytest.mark.parametrize(
    "response, gold, correct",
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18", True),
        ("So the total is \\boxed{1,250}.", "1250", True),
        ("The answer is $18.00.", "18", True),
        ("12 eggs, then 7 left", "18", False),
        ("no idea", "18", False),
    ],
)
def test_gsm8k_final_number(response, gold, correct):
    assert GSM8K.grade(response, gold)[1] == correct


def test_vote_groups_equivalent_answers_and_breaks_ties_early():
    eq = MATH.equivalent
    assert vote(["1/2", "3", "0.5", "3"], [1, 1, 1, 1], eq) == 0  # 1/2 ~ 0.5 tie with 3, first class wins
    assert vote(["1/2", "3", "3"], [1, 1, 1], eq) == 1
    assert vote([None, None], [1, 1], eq) is None
    assert vote(["1", "2", "2"], [5.0, 1.0, 1.0], eq) == 0  # weights decide
