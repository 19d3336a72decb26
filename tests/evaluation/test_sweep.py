"""``nabla-jax sweep``: a 2-cell, 2-problem grid end to end, and a killed sweep that resumes to the same records."""

import json
import os

import pytest

from nabla_jax.cli import main
from nabla_jax.evaluation.sweep import cells, read_spec
from tests.evaluation.test_eval_run import VOLATILE

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


GOOD = """
out = "{out}"
benchmark = "testbed"
policy = "testbed:policy"
reward = "testbed:outcome"
seeds = [0]
limit = 1
[decode]
max_new_tokens = 8
"""


@pytest.mark.parametrize("extra, message", [
    ("[decode]\ntemprature = 0.5\n", r"\[decode\] unknown field 'temprature'; known: .*temperature"),
    ("[nabla]\nlearning_rat = 0.1\n", r"\[nabla\] unknown field 'learning_rat'"),
    ("[reward_options]\nclipp = -6\n", r"\[reward_options\] unknown field 'clipp'"),
    ('[decode]\nmax_new_tokens = "16"\n', r"\[decode\] max_new_tokens must be an integer >= 1, got '16'"),
    ("[decode]\nmax_new_tokens = 0\n", r"max_new_tokens must be an integer >= 1, got 0"),
    ("[decode]\ntemperature = inf\n", r"\[decode\] temperature must be a finite number"),
    ("[decode]\nwbon_temperature = nan\n", r"wbon_temperature must be a finite number"),
    ("[nabla]\nlearning_rate = -1.0\n", r"\[nabla\] .*learning_rate"),
    ('[grid]\nmethod = ["greedy", "greedy"]\n', r"grid key 'method' lists a value twice"),
    ('[grid]\nn = [0]\nmethod = ["bon"]\n', r"n must be an integer >= 1, got 0"),
    ('[grid]\nmethod = ["greedy", "nosuch@2"]\n', r"unknown method 'nosuch'"),
    ('paired = ["greedy", "bon@2"]\n', r"paired must be a list of \[method A, method B\] pairs"),
])
def test_a_bad_cell_is_found_before_any_directory_is_made(extra, message, tmp_path):
    from nabla_jax.evaluation.sweep import check_spec

    top, tables = (extra, "") if not extra.startswith("[") else ("", extra)
    text = GOOD.format(out=tmp_path / "out").replace('out = "', top + 'out = "', 1)
    if tables.startswith("[decode]"):
        text = text.replace("[decode]\nmax_new_tokens = 8\n", tables)
    else:
        text += tables
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    with pytest.raises(ValueError, match=message):
        check_spec(str(spec), read_spec(str(spec)))
    assert main(["sweep", str(spec), "--no-progress"]) == 2
    assert not (tmp_path / "out").exists()


def test_seeds_and_limit_must_be_integers(tmp_path):
    from nabla_jax.evaluation.sweep import check_spec

    spec = tmp_path / "spec.toml"
    for bad, message in (('seeds = "0,1"', "seeds must be a non-empty list"), ('limit = "2"', "limit must be an integer")):
        spec.write_text(GOOD.format(out=tmp_path / "out").replace("seeds = [0]\nlimit = 1", bad))
        with pytest.raises(ValueError, match=message):
            check_spec(str(spec), read_spec(str(spec)))


def test_cell_names_never_collide():
    from nabla_jax.evaluation.sweep import _cell_name

    a, b = _cell_name({"decode.system": "Be brief!"}), _cell_name({"decode.system": "Be brief?"})
    assert a != b and a.startswith("decode.system=Be_brief_-")
    assert _cell_name({"method": "nabla@8", "nabla.learning_rate": 0.3}) == "method=nabla@8,nabla.learning_rate=0.3"


def test_wbon_temperature_can_be_swept(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(GOOD.format(out=tmp_path / "out") + '[grid]\nmethod = ["wbon@2"]\n"decode.wbon_temperature" = [0.5, 2.0]\n')
    assert main(["sweep", str(spec), "--no-progress"]) == 0
    for cell in cells(read_spec(str(spec))):
        with open(os.path.join(cell.directory, "fingerprint.json"), encoding="utf-8") as handle:
            entry = json.load(handle)["methods"]["wbon@2"]
        assert entry["wbon_temperature"] == cell.settings["decode"]["wbon_temperature"]
