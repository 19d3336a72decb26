"""Results directories are written only where they are: a symlinked record, fingerprint or summary file is refused;
a dropped partial line is said on stderr; report refuses records its fingerprint does not cover and a directory
given twice, and leaves no --out behind when it fails."""

import json
import os

import pytest

from nabla_jax.cli import main

EVAL = ["eval", "--benchmark", "testbed", "--limit", "2", "--max-new-tokens", "8", "--no-progress",
        "--method", "greedy", "--policy", "testbed:policy"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main([*EVAL, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", ["records.jsonl", "fingerprint.json"])
def test_a_symlinked_results_file_is_refused_and_its_target_untouched(name, tmp_path, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("someone else's file, no newline at the end")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / name)
    capsys.readouterr()
    assert main([*EVAL, "--out", str(out)]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert outside.read_text() == "someone else's file, no newline at the end"


def test_a_dropped_partial_line_is_said(run_dir, tmp_path, capsys):
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("fingerprint.json", "records.jsonl"):
        (out / name).write_bytes((run_dir / name).read_bytes())
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text(lines[0] + lines[1][:40])  # a kill in the middle of the second record
    capsys.readouterr()
    assert main([*EVAL, "--out", str(out)]) == 0
    assert "dropping an unterminated last line" in capsys.readouterr().err
    assert (out / "records.jsonl").read_text().count("\n") == 2


def test_report_refuses_what_its_fingerprint_does_not_cover(run_dir, tmp_path, capsys):
    out = tmp_path / "mixed"
    out.mkdir()
    (out / "fingerprint.json").write_bytes((run_dir / "fingerprint.json").read_bytes())
    row = json.loads((run_dir / "records.jsonl").read_text().splitlines()[0])
    (out / "records.jsonl").write_text(json.dumps({**row, "method": "nabla@2"}) + "\n")
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 2
    assert "'nabla@2' not in fingerprint.json" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
    assert main(["report", str(run_dir), str(run_dir), "--out", str(tmp_path / "twice")]) == 2
    assert "given twice" in capsys.readouterr().err and not (tmp_path / "twice").exists()
    os.symlink(tmp_path / "elsewhere.md", tmp_path / "results.md")
    assert main(["report", str(run_dir), "--out", str(tmp_path)]) == 2
    assert "symbolic link" in capsys.readouterr().err and not (tmp_path / "elsewhere.md").exists()


def test_keep_texts_added_on_resume_is_refused(run_dir, tmp_path, capsys):
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("fingerprint.json", "records.jsonl"):
        (out / name).write_bytes((run_dir / name).read_bytes())
    before = (out / "records.jsonl").read_bytes()
    capsys.readouterr()
    assert main([*EVAL[:4], "3", *EVAL[5:], "--keep-texts", "--out", str(out)]) == 2  # one problem more, with texts
    assert "keep_texts: None -> True" in capsys.readouterr().err
    assert (out / "records.jsonl").read_bytes() == before


def test_a_full_disk_names_the_file(tmp_path):
    import errno

    from nabla_jax.evaluation.records import RecordStore

    store = RecordStore.open(str(tmp_path / "run"), {"shared": {}, "methods": {"greedy": {}}})

    class Full:
        def write(self, _):
            raise OSError(errno.ENOSPC, "No space left on device")

    store._file = Full()
    with pytest.raises(OSError, match=r"records\.jsonl: could not write a record \(No space left on device\)"):
        store.append({"method": "greedy", "problem_id": "p", "seed": 0, "correct": True})


def test_a_stale_convert_staging_directory_is_removed_and_a_live_one_kept(tmp_path):
    stale, live = tmp_path / ".convert-999999999-x", tmp_path / f".convert-{os.getpid()}-y"
    stale.mkdir()
    live.mkdir()
    assert main(["convert", "testbed:policy", str(tmp_path / "dst"), "--to", "hf"]) == 0
    assert not stale.exists() and live.exists()


def test_characters_outside_the_vocabulary_are_said_once():
    import warnings

    import nabla_jax
    from nabla_jax.templates import chat_prompt_ids

    tokenizer = nabla_jax.load_policy("testbed:policy").tokenizer
    with pytest.warns(UserWarning, match="outside the tokenizer's vocabulary"):
        chat_prompt_ids(tokenizer, "What is 2+2?")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chat_prompt_ids(tokenizer, "What is 3+3?")  # said once
        chat_prompt_ids(tokenizer, "what is 3+3?")
