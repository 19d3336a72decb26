"""Metrics: the unbiased pass@k estimator against brute force, the intervals, summaries and matched budgets."""

import itertools
import math

import numpy as np
import pytest

from nabla_jax.evaluation.grading import get_grader
from nabla_jax.evaluation.metrics import (
    bootstrap_interval,
    matched_budget,
    pass_at_k,
    summarize,
    t_interval,
    t_quantile_975,
)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_brute_force_over_subsets(n):
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(correct[i] for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_t_interval_known_values():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(30) == 2.042
    assert t_quantile_975(60) == pytest.approx(2.000, abs=2e-3)  # table value 2.000
    assert t_quantile_975(1000) == pytest.approx(1.962, abs=1e-3)
    low, high = t_interval([0.5, 0.6, 0.7])
    half = 4.303 * 0.1 / math.sqrt(3)
    assert (low, high) == pytest.approx((0.6 - half, 0.6 + half))
    assert t_interval([0.5]) is None


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_problems():
    rng = np.random.default_rng(1)
    small = rng.random(30) < 0.5
    large = rng.random(3000) < 0.5
    lo, hi = bootstrap_interval(small)
    assert lo <= small.mean() <= hi
    lo2, hi2 = bootstrap_interval(large)
    assert hi2 - lo2 < (hi - lo) / 5
    assert bootstrap_interval(small) == (lo, hi)  # fixed RNG: reproducible


def rec(method, n, pid, seed, correct, answers=None, corrects=None, calls=10, **extra):
    answers = answers or ["1"]
    corrects = corrects or [correct]
    return {
        "method": method, "method_name": method.split("@")[0], "n": n, "problem_id": pid, "seed": seed,
        "correct": correct, "candidates": [{"answer": a, "correct": c} for a, c in zip(answers, corrects)],
        "official_calls": calls, "full_calls": calls + n, "flops": 100.0 * calls, "generated_tokens": calls,
        "reward_calls": 0, "rollouts": n, "wall_time_s": 1.0, "compiled": False, **extra,
    }


def test_summarize_accuracy_pass_maj_costs_and_rejections():
    records = [
        rec("sc@2", 2, "p", 0, True, ["1", "2"], [True, False], calls=20),
        rec("sc@2", 2, "q", 0, False, ["3", "2"], [False, True], calls=30),
        rec("sc@2", 2, "p", 1, True, ["1", "1"], [True, True], calls=20),
        rec("sc@2", 2, "q", 1, True, ["2", "3"], [True, False], calls=30, compiled=True, wall_time_s=50.0),
        rec("nabla@8", 8, "p", 0, True, stats={"rejections": 3, "proposals": 4}),
        rec("nabla@8", 8, "q", 0, False, stats={"rejections": 1}, rollouts=3),
    ]
    rows = {r["method"]: r for r in summarize(records, get_grader("math").equivalent)}
    sc = rows["sc@2"]
    assert sc["accuracy"] == 0.75 and sc["accuracy_per_seed"] == {"0": 0.5, "1": 1.0}
    assert sc["ci95_seeds"] == pytest.approx((0.75 - 12.706 * 0.25, 0.75 + 12.706 * 0.25))
    assert sc["pass@k"] == {"1": pytest.approx(0.625), "2": 1.0}
    assert sc["maj@k"] == {"1": 0.75, "2": 0.75}  # maj@1 = first candidate; 2-way ties go to the first
    assert sc["official_calls"] == 25 and sc["full_calls"] == 27 and sc["flops"] == 2500
    assert sc["wall_time_s"] == 1.0 and not sc["wall_time_includes_compile"]  # the compiled batch is left out
    assert "rejection_rate" not in sc
    nabla = rows["nabla@8"]
    assert nabla["rejection_rate"] == pytest.approx(4 / 6)  # proposals default to rollouts - 1
    assert nabla["ci95_seeds"] is None  # one seed


def test_matched_budget_takes_the_largest_affordable_configuration():
    rows = [
        {"method": "bon@2", "method_name": "bon", "official_calls": 20.0, "n": 2},
        {"method": "bon@4", "method_name": "bon", "official_calls": 40.0, "n": 4},
        {"method": "bon@8", "method_name": "bon", "official_calls": 80.0, "n": 8},
        {"method": "nabla@8", "method_name": "nabla", "official_calls": 90.0, "n": 8},
    ]
    best = matched_budget(rows, 50)
    assert best["bon"]["method"] == "bon@4" and "nabla" not in best
