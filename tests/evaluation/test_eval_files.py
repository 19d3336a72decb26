"""Benchmark files and the results directory: validation errors name FILE:LINE, nothing written is changed, a
partial last line is dropped on resume, a changed configuration is refused, one writer at a time."""

import hashlib
import json
import os
import re

import pytest

from nabla_jax.evaluation.datasets import BENCHMARKS, DATA_DIR, DatasetError, load_benchmark, read_problems
from nabla_jax.evaluation.records import FingerprintMismatch, RecordsError, RecordStore, load_directory

FINGERPRINT = {"shared": {"decode": {"temperature": 0.6}}, "methods": {"sc@2": {"method": "sc", "n": 2}}}


def record(pid, seed=0, method="sc@2", **extra):
    return {"method": method, "problem_id": pid, "seed": seed, "correct": True, **extra}


def test_packaged_benchmarks_match_the_readme_checksums():
    readme = open(os.path.join(DATA_DIR, "README.md"), encoding="utf-8").read()
    sums = dict((name, digest) for digest, name in re.findall(r"([0-9a-f]{64})  (\S+\.jsonl)", readme))
    counts = {"math500": 500, "aime2024": 30, "aime2025": 30, "amc": 83, "gsm8k": 1319}
    for name, rows in counts.items():
        bench = load_benchmark(name)
        assert len(bench.problems) == rows
        on_disk = hashlib.sha256(open(BENCHMARKS[name].path, "rb").read()).hexdigest()
        assert bench.sha256 == sums[f"{name}.jsonl"] == on_disk
    assert load_benchmark("gsm8k").grader.name == "gsm8k"
    assert [p.index for p in load_benchmark("amc", limit=3).problems] == [0, 1, 2]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "b", "problem": "p"', "invalid JSON"),
        ('{"id": "b", "problem": "p"}', "missing required field 'answer'"),
        ('{"id": "b", "problem": "", "answer": "1"}', "field 'problem' must be a non-empty string"),
        ('{"id": "b", "problem": "p", "answer": [1]}', "field 'answer' must be a non-empty string"),
        ('["id", "problem", "answer"]', "expected a JSON object"),
        ('{"id": "a", "problem": "p", "answer": "1"}', "duplicate id 'a' (first on line 1)"),
    ],
)
def test_malformed_dataset_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bench.jsonl"
    good = '{"id": "a", "problem": "What is 1+1?", "answer": "2"}'
    path.write_text(f"{good}\n\n{line}\n{good.replace('a', 'c', 1)}\n")
    before = path.read_bytes()
    with pytest.raises(DatasetError) as err:
        read_problems(str(path))
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)
    assert path.read_bytes() == before


def test_user_dataset_accepts_integer_answers_and_keeps_extra_fields(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "x", "problem": "1+1?", "answer": 2, "level": 1}\n')
    bench = load_benchmark(str(path))
    assert bench.name == "mine" and bench.problems[0].answer == "2" and bench.problems[0].extra == {"level": 1}


def write_lines(directory, lines: list[bytes]):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "fingerprint.json"), "w") as f:
        json.dump(FINGERPRINT, f)
    with open(os.path.join(directory, "records.jsonl"), "wb") as f:
        f.write(b"".join(lines))


@pytest.mark.parametrize(
    "bad, message",
    [
        (b'{"method": "sc@2", "problem_id": "b", "se\n', "not a JSON record"),
        (b'{"method": "sc@2", "problem_id": "b"}\n', "field 'seed' missing"),
        (json.dumps(record("a")).encode() + b"\n", "duplicate record ('sc@2', 'a', 0) (first on line 1)"),
        (json.dumps(record("b", method="bon@2")).encode() + b"\n", "method 'bon@2' not in fingerprint.json"),
    ],
)
def test_malformed_results_line_names_file_and_line_and_changes_nothing(tmp_path, bad, message):
    directory = str(tmp_path / "run")
    lines = [json.dumps(record("a")).encode() + b"\n", bad, json.dumps(record("c")).encode() + b"\n", b'{"meth']
    write_lines(directory, lines)
    snapshot = {name: open(os.path.join(directory, name), "rb").read() for name in os.listdir(directory)}
    with pytest.raises(RecordsError) as err:
        RecordStore.open(directory, FINGERPRINT)
    path = os.path.join(directory, "records.jsonl")
    assert message in str(err.value)
    if "not in fingerprint" not in message:
        assert str(err.value).startswith(f"{path}:2: ")
    for name, data in snapshot.items():
        assert open(os.path.join(directory, name), "rb").read() == data


def test_partial_last_line_is_dropped_on_resume_only(tmp_path):
    directory = str(tmp_path / "run")
    complete = json.dumps(record("a")).encode() + b"\n"
    write_lines(directory, [complete, b'{"method": "sc@2", "problem_id": "b", "se'])
    assert [r["problem_id"] for r in load_directory(directory)[1]] == ["a"]  # reading leaves the file alone
    assert open(os.path.join(directory, "records.jsonl"), "rb").read().endswith(b'"se')
    with RecordStore.open(directory, FINGERPRINT) as store:
        assert open(store.path, "rb").read() == complete
        assert store.done("sc@2", "a", 0) and not store.done("sc@2", "b", 0)
        store.append(record("b"))
        with pytest.raises(RecordsError):
            store.append(record("b"))
    lines = open(os.path.join(directory, "records.jsonl"), "rb").read().splitlines()
    assert [json.loads(line)["problem_id"] for line in lines] == ["a", "b"]


def test_changed_configuration_is_refused(tmp_path):
    directory = str(tmp_path / "run")
    with RecordStore.open(directory, FINGERPRINT) as store:
        store.append(record("a"))
    changed = {"shared": {"decode": {"temperature": 0.7}}, "methods": FINGERPRINT["methods"]}
    with pytest.raises(FingerprintMismatch, match=r"decode.temperature: 0.6 -> 0.7.*new --out directory"):
        RecordStore.open(directory, changed)
    other_n = {"shared": FINGERPRINT["shared"], "methods": {"sc@2": {"method": "sc", "n": 3}}}
    with pytest.raises(FingerprintMismatch, match=r"sc@2.n: 2 -> 3"):
        RecordStore.open(directory, other_n)
    # a new method key with the same shared settings joins the directory
    more = {"shared": FINGERPRINT["shared"], "methods": {"bon@2": {"method": "bon", "n": 2}}}
    with RecordStore.open(directory, more) as store:
        assert store.done("sc@2", "a", 0)
    assert set(load_directory(directory)[0]["methods"]) == {"sc@2", "bon@2"}


def test_records_without_fingerprint_and_concurrent_writers_are_refused(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "records.jsonl").write_text(json.dumps(record("a")) + "\n")
    with pytest.raises(FingerprintMismatch, match="no fingerprint.json"):
        RecordStore.open(str(directory), FINGERPRINT)
    fresh = str(tmp_path / "fresh")
    with RecordStore.open(fresh, FINGERPRINT):
        with pytest.raises(FileExistsError, match="another nabla-jax eval is writing"):
            RecordStore.open(fresh, FINGERPRINT)
