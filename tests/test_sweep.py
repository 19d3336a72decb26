"""``nabla-jax sweep``: a 2-cell, 2-problem grid end to end, and a killed sweep that resumes to the same records."""

import json
import os

import pytest

from nabla_jax.cli import main
from nabla_jax.evaluation.sweep import cells, read_spec
from tests.test_eval_run import VOLATILE

SPEC = """
out = "{out}"
benchmark = "testbed"
policy = "testbed:policy"
reward = "likelihood:testbed:verifier"
seeds = [0]
limit = 2
[decode]
max_new_tokens = 16
[reward_options]
clip = -6.0
[nabla]
grad_threshold = "none"
max_iters = 2
[grid]
method = ["bon@2", "nabla@2"]
"""


def lines(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()


def stable(records):
    """Records without the fields that may differ between two runs (timings)."""
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in records]


def test_sweep_runs_every_cell_and_resumes_after_a_kill(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(out=tmp_path / "out"))
    assert main(["sweep", str(spec), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "cell 2/2" in printed and "| method=nabla@2 | nabla@2 |" in printed
    names = [c.name for c in cells(read_spec(str(spec)))]
    full = {n: lines(tmp_path / "out" / n / "records.jsonl") for n in names}
    assert all(len(v) == 2 for v in full.values())  # 2 problems x 1 seed per cell
    assert os.path.isfile(tmp_path / "out" / "report" / "summary.json")
    # a kill in the middle of the second cell: its last record half written, the first cell complete
    killed = tmp_path / "out" / names[1] / "records.jsonl"
    killed.write_text(full[names[1]][0] + "\n" + full[names[1]][1][:40])
    assert main(["sweep", str(spec), "--no-progress"]) == 0
    resumed = {n: lines(tmp_path / "out" / n / "records.jsonl") for n in names}
    assert resumed[names[0]] == full[names[0]]  # the finished cell was not recomputed
    assert {n: stable(v) for n, v in resumed.items()} == {n: stable(v) for n, v in full.items()}


def test_bad_specs_are_refused_naming_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('out = "x"\nbenchmark = "testbed"\npolicy = "p"\n[grid]\n"temperature" = [0.1]\n')
    with pytest.raises(ValueError, match="grid key 'temperature'"):
        read_spec(str(bad))
    bad.write_text('out = "x"\nbenchmark = "testbed"\n')
    with pytest.raises(ValueError, match="missing 'policy'"):
        read_spec(str(bad))
    bad.write_text("out = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        read_spec(str(bad))


def test_testbed_names_resolve_to_the_bundled_models():
    from nabla_jax.bundled import resolve_spec
    from nabla_jax.testbed import PRM_DIR, REWARD_DIR, VERIFIER_DIR

    assert resolve_spec("testbed:prm") == PRM_DIR
    assert resolve_spec("testbed:reward") == REWARD_DIR
    assert resolve_spec("likelihood:testbed:verifier") == "likelihood:" + VERIFIER_DIR
    assert resolve_spec("runs/testbed:x") == "runs/testbed:x"  # a path, not a bundled name
    with pytest.raises(ValueError, match="testbed:outcome"):
        resolve_spec("testbed:rewards")  # the error lists the valid names
