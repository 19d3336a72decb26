"""Matched-cost comparisons against the best-of-N curve, on a synthetic curve whose pairing and differences are
known by hand."""

import pytest

from nabla_jax.evaluation.matched import bracket, markdown, matched_comparisons

# bon@k costs k * 10 FLOPs and 5 * k calls; "x@4" costs 25 FLOPs (between bon@2 and bon@4) and 40 calls
CURVE_COST = {1: 10.0, 2: 20.0, 4: 40.0, 8: 80.0}


def record(method, name, problem, seed, correct, flops, calls, wall=0.1, compiled=False):
    return {"method": method, "method_name": name, "n": None, "problem_id": f"p{problem}", "seed": seed,
            "correct": correct, "flops": flops, "official_calls": calls, "wall_time_s": wall, "compiled": compiled}


def synthetic() -> list[dict]:
    rows = []
    for problem in range(10):
        for seed in (0, 1):
            for k, cost in CURVE_COST.items():
                # bon@k solves the first 2k problems (capped at 10)
                rows.append(record(f"bon@{k}", "bon", problem, seed, problem < 2 * k, cost, 5 * k, wall=0.01 * k))
            # x solves problems 0-6: 7 of 10; bon@2 solves 4, bon@4 solves 8
            rows.append(record("x@4", "x", problem, seed, problem < 7, 25.0, 40, wall=0.05, compiled=problem == 0))
    return rows


def test_bracket_takes_the_cheapest_above_and_the_dearest_below():
    curve = [(c, f"bon@{k}") for k, c in CURVE_COST.items()]
    assert bracket(25.0, curve) == ("bon@4", "bon@2")
    assert bracket(40.0, curve) == ("bon@4", "bon@2")  # "at least as much": an equal cost is above
    assert bracket(5.0, curve) == ("bon@1", None)
    assert bracket(100.0, curve) == (None, "bon@8")


def test_matched_flops_pairs_each_method_with_its_neighbours_on_the_curve():
    found = {c["side"]: c for c in matched_comparisons(synthetic(), "flops", "run")}
    above, below = found["above"], found["below"]
    assert (above["match"], below["match"]) == ("bon@4", "bon@2")
    assert above["difference"] == pytest.approx(0.7 - 0.8)  # x solves 7 of 10, bon@4 8 of 10
    assert below["difference"] == pytest.approx(0.7 - 0.4)
    assert (above["only_a"], above["only_b"]) == (0, 2)  # problem 7, both seeds: bon@4 alone
    assert (below["only_a"], below["only_b"]) == (6, 0)  # problems 4-6, both seeds: x alone
    assert above["pairs"] == below["pairs"] == 20


def test_matched_calls_and_warm_wall_time_use_their_own_costs():
    calls = {c["side"]: c["match"] for c in matched_comparisons(synthetic(), "calls")}
    assert calls == {"above": "bon@8", "below": "bon@4"}  # 40 calls: bon@8 costs 40, bon@4 20
    wall = {c["side"]: c for c in matched_comparisons(synthetic(), "wall")}
    assert wall["above"]["cost"] == pytest.approx(0.05)  # the compiled batch's records are left out (all 0.05)
    assert (wall["above"]["match"], wall["below"]["match"]) == ("bon@8", "bon@4")
    text = markdown(list(wall.values()))
    assert "| x@4 |" in text and "bon@8 (above)" in text and "bon@4 (below)" in text


def test_matching_needs_a_best_of_n_curve_and_a_known_measure():
    rows = [r for r in synthetic() if r["method_name"] != "bon"]
    with pytest.raises(ValueError, match="no bon@N records"):
        matched_comparisons(rows, "flops")
    with pytest.raises(ValueError, match="--matched takes flops, calls, wall"):
        matched_comparisons(synthetic(), "tokens")

