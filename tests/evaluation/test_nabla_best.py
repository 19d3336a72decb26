"""``nabla_best@k``: k independent ∇-Reasoner runs, the best-rewarded kept. Checked against ``nabla@N`` run alone
at each run's own seed: run 0 is ``nabla``'s record, run 1 is ``nabla`` at ``run_seed(seed, 1)``, and the choice is
the higher reward of the two, at the two runs' cost plus one reward pass each."""

import json
import os

import pytest

from nabla_jax.bundled import resolve_spec
from nabla_jax.commands.demo import DEMO_NABLA
from nabla_jax.evaluation.context import DecodeSettings
from nabla_jax.evaluation.nabla_methods import run_seed
from nabla_jax.evaluation.runner import run_eval

COST = ("official_calls", "full_calls", "flops", "generated_tokens", "rollouts", "reward_calls")


def _records(directory):
    with open(os.path.join(directory, "records.jsonl"), encoding="utf-8") as f:
        return {(r["method"], r["problem_id"]): r for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("nabla_best")
    config = DEMO_NABLA.replace(max_n_generations=2, learning_rate=0.3)
    common = dict(policy=resolve_spec("testbed:policy"), reward="likelihood:testbed:verifier", problems="0:6",
                  settings=DecodeSettings.of(config.replace(max_new_tokens=16)), batch_size=8,
                  options={"nabla": config})
    run_eval("testbed", "nabla@2,nabla_best", out=str(base / "best"), seeds=[0], ns=(1, 2), **common)
    run_eval("testbed", "nabla@2", out=str(base / "second"), seeds=[run_seed(0, 1)], ns=(2,), **common)
    return _records(base / "best"), _records(base / "second")


def test_one_run_is_nablas_own_record(runs):
    best, _ = runs
    problems = sorted({p for m, p in best if m == "nabla@2"})
    assert len(problems) == 6
    for p in problems:
        alone, one = best[("nabla@2", p)], best[("nabla_best@1", p)]
        assert one["answer"] == alone["answer"] and one["correct"] == alone["correct"]
        assert [one[k] for k in COST] == [alone[k] for k in COST]


def test_two_runs_keep_the_higher_reward_at_both_runs_cost(runs):
    best, second = runs
    differ = 0
    for (method, p), two in best.items():
        if method != "nabla_best@2":
            continue
        first, other = best[("nabla@2", p)], second[("nabla@2", p)]
        assert [c["answer"] for c in two["candidates"]] == [first["answer"], other["answer"]]
        rewards = [c["reward"] for c in two["candidates"]]
        assert two["chosen"] == (1 if rewards[1] > rewards[0] else 0)
        assert two["answer"] == two["candidates"][two["chosen"]]["answer"]
        assert two["reward_calls"] == first["reward_calls"] + other["reward_calls"] + 2
        assert two["official_calls"] == first["official_calls"] + other["official_calls"] + 2
        assert two["flops"] > first["flops"] + other["flops"]  # plus the two scoring passes
        differ += rewards[0] != rewards[1]
    assert differ > 0  # the runs are independent: some problems get two different responses
