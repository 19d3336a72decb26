"""Paired statistics for two methods on the same problems and seeds, against hand-computed cases."""

import numpy as np
import pytest

from nabla_jax.evaluation.paired import compare, mcnemar_exact


def test_mcnemar_exact_p_value_of_a_known_table():
    # discordant pairs 10 / 2: p = 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096, rel=1e-12)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 7) == pytest.approx(2 / 2**7)


def records(method, correct, seeds=3):
    return [{"method": method, "problem_id": f"p{i}", "seed": s, "correct": bool(c[s] if np.ndim(c) else c)}
            for i, c in enumerate(correct) for s in range(seeds)]


def test_paired_interval_covers_a_planted_difference():
    rng = np.random.default_rng(0)
    base = rng.random((500, 3)) < 0.5  # method B: 50% correct, independently per (problem, seed)
    planted = base | (rng.random((500, 3)) < 0.2)  # method A: B's successes plus 20% of its failures
    truth = 0.5 * 0.2  # expected gain: 10 points
    result = compare(records("A", planted) + records("B", base), "A", "B")
    low, high = result["difference_ci"]
    assert result["pairs"] == 1500 and result["problems"] == 500 and result["only_b"] == 0
    assert low <= truth <= high and low > 0
    assert result["difference"] == pytest.approx(planted.mean() - base.mean())
    assert result["mcnemar_p"] < 1e-10
    same = compare(records("A", base) + records("B", base), "A", "B")
    assert same["difference"] == 0 and same["mcnemar_p"] == 1.0 and same["difference_ci"] == (0.0, 0.0)


def test_paired_comparison_errors_name_the_problem():
    with pytest.raises(ValueError, match="no records of method 'C'"):
        compare(records("A", [True]) + records("B", [False]), "A", "C")
