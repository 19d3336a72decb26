"""Problem ranges (``--problems A:B`` on eval, demo and sweep specs): a range of a benchmark, each problem keeping its
position (and so its sampling keys), a range past the first problem recorded in the fingerprint, bad ranges refused
by name before anything is written."""

import json
import os

import pytest

from nabla_jax.cli import main
from nabla_jax.evaluation.datasets import load_benchmark, parse_problem_range

EVAL = ["eval", "--benchmark", "testbed", "--max-new-tokens", "8", "--no-progress", "--method", "greedy",
        "--policy", "testbed:policy"]


@pytest.mark.parametrize("text, expected", [("200", (0, 200)), ("200:500", (200, 500)), ("3:", (3, None)),
                                            (" 0:2 ", (0, 2))])
def test_ranges_parse(text, expected):
    assert parse_problem_range(text) == expected


@pytest.mark.parametrize("text", ["5:2", "2:2", "-1:3", "a:b", "", "1:2:3"])
def test_bad_ranges_are_refused_by_name(text):
    with pytest.raises(ValueError, match="--problems"):
        parse_problem_range(text)


def test_a_range_keeps_positions_and_only_a_later_start_is_recorded():
    whole = load_benchmark("testbed")
    report = load_benchmark("testbed", problems="200:500")
    assert [p.index for p in report.problems] == list(range(200, 500)) and report.selection == "200:500"
    assert report.problems[0] == whole.problems[200]
    assert load_benchmark("testbed", problems="0:200").selection is None  # the first 200: what --limit 200 is
    assert load_benchmark("testbed", problems="490:").selection == "490:500"
    with pytest.raises(ValueError, match="starts past the benchmark's 500 problems"):
        load_benchmark("testbed", problems="500:600")
    with pytest.raises(ValueError, match="--limit or --problems, not both"):
        load_benchmark("testbed", limit=3, problems="0:2")


def test_eval_runs_a_range_and_refuses_another_in_the_same_directory(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main([*EVAL, "--problems", "3:5", "--out", out]) == 0
    with open(os.path.join(out, "records.jsonl"), encoding="utf-8") as handle:
        assert sorted(json.loads(line)["problem_index"] for line in handle) == [3, 4]
    with open(os.path.join(out, "fingerprint.json"), encoding="utf-8") as handle:
        assert json.load(handle)["shared"]["benchmark"]["problems"] == "3:5"
    capsys.readouterr()
    assert main([*EVAL, "--problems", "3:6", "--out", out]) == 2
    assert "benchmark.problems" in capsys.readouterr().err
    assert main([*EVAL, "--problems", "9:4", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
