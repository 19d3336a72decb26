"""Bad input through the command line, as an adversarial user would give it: each probe gets an error that names
the problem (never a raw traceback), and nothing already written is lost, corrupted or left half-made.

Every probe is one row of ``PROBES``: how to make the bad input, the command, the exit code and the message it
must print, and what must (not) exist afterwards. Run-time NaN handling, resume by content and seeds follow."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from nabla_jax.cli import main

POLICY = "nabla_jax/testbed/models/policy"
REWARD = "nabla_jax/testbed/models/reward"
EVAL = ["eval", "--benchmark", "testbed", "--limit", "2", "--max-new-tokens", "12", "--no-progress"]


def copy_model(source: str, target) -> str:
    shutil.copytree(source, target)
    return str(target)


def poison(directory: str, tensor: str, index=(0, 0), value=float("nan")) -> str:
    """Set one entry of ``tensor`` in ``directory``'s safetensors to ``value``."""
    file = os.path.join(directory, "model.safetensors")
    tensors = load_file(file)
    tensors[tensor][index] = value
    save_file(tensors, file, metadata={"format": "pt"})
    return directory


def edit_json(file: str, edit) -> None:
    raw = json.load(open(file))
    json.dump(edit(raw), open(file, "w"))


# --- the probes -----------------------------------------------------------------------------------------------------


def nan_policy(tmp):
    return poison(copy_model(POLICY, tmp / "p"), "model.layers.0.mlp.down_proj.weight")


def nan_reward(tmp):
    return poison(copy_model(REWARD, tmp / "r"), "score.weight")


def no_tokenizer_json(tmp):
    directory = copy_model(POLICY, tmp / "p")
    os.remove(os.path.join(directory, "tokenizer.json"))
    return directory


def config_list(tmp):
    directory = copy_model(POLICY, tmp / "p")
    json.dump([], open(os.path.join(directory, "config.json"), "w"))
    return directory


def kv_heads_not_dividing(tmp):
    directory = copy_model(POLICY, tmp / "p")
    edit_json(os.path.join(directory, "config.json"), lambda raw: {**raw, "num_key_value_heads": 3})
    return directory


def truncated_orbax(tmp):
    assert main(["convert", POLICY, str(tmp / "orbax")]) == 0
    data = [os.path.join(root, f) for root, _, files in os.walk(tmp / "orbax" / "params") for f in files
            if os.sep + "d" + os.sep in os.path.join(root, f)]
    for file in data:
        os.truncate(file, os.path.getsize(file) // 2)
    return str(tmp / "orbax")


def benchmark_with_duplicate_key(tmp):
    file = tmp / "bench.jsonl"
    file.write_text('{"id": "a", "problem": "1+1", "answer": "2", "answer": "3"}\n')
    return str(file)


PROBES = {
    # name: (make(tmp) -> path, argv(path, tmp), exit code, message pattern, paths that must not exist)
    "nan policy weights: generate": (
        nan_policy, lambda p, t: ["generate", "--policy", p, "--prompt", "1+1"], 2,
        r"non-finite .*model\.layers\.0\.mlp\.down_proj\.weight \(1 entries\).*--allow-nonfinite", []),
    "nan policy weights: eval": (
        nan_policy, lambda p, t: EVAL + ["--method", "greedy", "--policy", p, "--out", str(t / "out")], 2,
        r"model\.layers\.0\.mlp\.down_proj\.weight", ["out"]),
    "nan reward weights: eval bon": (
        nan_reward, lambda p, t: EVAL + ["--method", "bon@2", "--policy", POLICY, "--reward", p, "--out",
                                         str(t / "out")], 2, r"non-finite .*score\.weight", ["out"]),
    "nan weights: convert": (
        nan_policy, lambda p, t: ["convert", p, str(t / "dst"), "--to", "hf"], 2, r"down_proj\.weight", ["dst"]),
    "no tokenizer.json": (
        no_tokenizer_json, lambda p, t: ["generate", "--policy", p, "--prompt", "1"], 2, r"no tokenizer\.json", []),
    "config.json holding []": (
        config_list, lambda p, t: ["generate", "--policy", p, "--prompt", "1"], 2,
        r"config\.json: expected a JSON object, got list", []),
    "kv heads not dividing heads": (
        kv_heads_not_dividing, lambda p, t: ["generate", "--policy", p, "--prompt", "1"], 2,
        r"num_key_value_heads \(3\) must divide num_attention_heads \(4\)", []),
    "truncated orbax data": (
        truncated_orbax, lambda p, t: ["generate", "--policy", p, "--prompt", "1"], 2,
        r"cannot read the params.*, the checkpoint may be truncated or corrupt", []),
    "OUT under a regular file": (
        lambda t: (t / "file").write_text("x") and str(t / "file"),
        lambda p, t: EVAL + ["--method", "greedy", "--policy", POLICY, "--out", os.path.join(p, "out")], 2,
        r"error: .*file", []),
    "report --budget calls=abc": (
        lambda t: "x", lambda p, t: ["report", str(t), "--budget", "calls=abc"], 2,
        r"--budget 'calls=abc': 'abc' is not a number", []),
    "eval seed past 2**64": (
        lambda t: "x", lambda p, t: EVAL + ["--method", "greedy", "--policy", POLICY, "--seeds", str(2**64),
                                            "--out", str(t / "out")], 2, r"out of range.*2\*\*64", ["out"]),
    "prompt longer than the context": (
        lambda t: "x", lambda p, t: EVAL[:-3] + ["--max-new-tokens", "1024", "--no-progress", "--method", "greedy",
                                                 "--policy", POLICY, "--out", str(t / "out")], 2,
        r"too long.*context of 256", ["out"]),
    "benchmark line with a duplicate key": (
        benchmark_with_duplicate_key,
        lambda p, t: ["eval", "--benchmark", p, "--method", "greedy", "--policy", POLICY, "--out", str(t / "out")],
        2, r"bench\.jsonl:1: key 'answer' appears twice", ["out"]),
    "context-only gradient for an outcome reward": (
        lambda t: "x", lambda p, t: EVAL + ["--method", "bon@2", "--policy", POLICY, "--reward", REWARD,
                                            "--reward-context-gradient-only", "--out", str(t / "out")], 2,
        r"target_gradient applies to a likelihood reward .* only", ["out"]),
}


@pytest.mark.parametrize("name", list(PROBES))
def test_bad_input_gets_an_error_naming_the_problem(name, tmp_path, capsys):
    make, argv, code, pattern, absent = PROBES[name]
    path = make(tmp_path)
    capsys.readouterr()
    assert main(argv(path, tmp_path)) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, err), err
    for rel in absent:
        assert not os.path.exists(tmp_path / rel), f"{rel} was left behind"


def test_generate_seed_out_of_range_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--policy", POLICY, "--prompt", "1", "--seed", str(2**70)])
    assert exit_.value.code == 2
    assert "out of range" in capsys.readouterr().err


# --- run-time NaN: flagged, never a silent result ------------------------------------------------------------------


def test_nonfinite_weights_allowed_are_flagged_at_run_time(tmp_path, capsys):
    """With --allow-nonfinite: generation stops the row with finish "nonfinite" and exits 3; eval records carry
    strict JSON (null, with the field named), bon/wbon leave NaN rewards out, the ∇-Reasoner counts the NaN."""
    policy = nan_policy(tmp_path)
    assert main(["generate", "--policy", policy, "--prompt", "1+1", "--max-new-tokens", "8", "--allow-nonfinite",
                 "--json"]) == 3
    out = capsys.readouterr()
    assert json.loads(out.out.splitlines()[0])["finish_reason"] == "nonfinite"
    assert "NaN or infinite" in out.err

    reward = nan_reward(tmp_path)
    out_dir = tmp_path / "out"
    argv = EVAL + ["--method", "greedy,bon@2,wbon@2,nabla@2", "--policy", POLICY, "--reward", reward,
                   "--allow-nonfinite", "--nabla-selection", "false", "--out", str(out_dir)]
    assert main(argv) == 0
    lines = (out_dir / "records.jsonl").read_text().splitlines()

    def strict(constant):
        raise AssertionError(f"bare {constant} in a record")

    records = [json.loads(line, parse_constant=strict) for line in lines]
    by_method = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    assert all(r["error"] is None for r in by_method["greedy"])
    for method in ("bon@2", "wbon@2"):
        for r in by_method[method]:
            assert r["chosen"] is None and r["answer"] is None and r["correct"] is False
            assert "non-finite reward for candidate(s) [0, 1]" in r["error"]
            assert all(c["reward"] is None for c in r["candidates"])
            assert r["nonfinite_fields"] == ["candidates.0.reward", "candidates.1.reward"]
    for r in by_method["nabla@2"]:
        assert r["stats"]["nonfinite"] > 0 and "NaN/inf met" in r["error"]
    capsys.readouterr()
    assert main(["report", str(out_dir)]) == 0
    assert "Warning: records whose answer met NaN/inf" in capsys.readouterr().out


def test_bon_and_wbon_choose_among_finite_rewards_only():
    from nabla_jax.evaluation.accounting import ZERO
    from nabla_jax.evaluation.context import Candidate
    from nabla_jax.evaluation.methods import select_bon, _select_wbon, nonfinite_error

    class Ctx:
        options = {}
        grader = type("G", (), {"equivalent": staticmethod(lambda a, b: a == b)})

    cands = [Candidate([1], "a", "1", "eos", ZERO, reward) for reward in (math.nan, 0.5, math.inf, 0.1)]
    cands[2].reward = -math.inf
    assert select_bon(Ctx, cands) == 1
    assert _select_wbon(Ctx, cands) == 1
    assert nonfinite_error(cands, True) == "non-finite reward for candidate(s) [0, 2] (left out of the choice)"
    cands[1].finish = "nonfinite"
    assert nonfinite_error(cands[1:2], False) == "non-finite logits cut candidate(s) [0]"


def test_records_are_strict_json_and_type_checked_on_load(tmp_path):
    from nabla_jax.evaluation.records import RecordsError, parse_records, record_line

    line = record_line({"method": "m", "problem_id": "p", "seed": 0, "correct": False, "stats": {"x": math.nan}})
    assert json.loads(line) ["nonfinite_fields"] == ["stats.x"] and b"NaN" not in line
    bad = {"method": "m", "problem_id": "p", "seed": 0, "correct": "yes"}
    file = tmp_path / "records.jsonl"
    file.write_text(json.dumps(bad) + "\n")
    with pytest.raises(RecordsError, match=r"records\.jsonl:1: field 'correct' missing or not a bool"):
        parse_records(str(file))
    file.write_text(json.dumps({**bad, "correct": True, "wall_time_s": "fast"}) + "\n")
    with pytest.raises(RecordsError, match=r"'wall_time_s' must be int or float"):
        parse_records(str(file))


# --- resume knows the weights it ran ---------------------------------------------------------------------------------


def test_resume_is_by_content_not_path(tmp_path, capsys):
    first, second = copy_model(POLICY, tmp_path / "a"), copy_model(POLICY, tmp_path / "b")
    out = str(tmp_path / "out")
    run = lambda policy, limit, *extra: main(  # noqa: E731
        ["eval", "--benchmark", "testbed", "--limit", str(limit), "--max-new-tokens", "8", "--no-progress",
         "--method", "greedy", "--policy", policy, "--out", out, *extra])
    assert run(first, 1) == 0
    assert run(second, 2) == 0  # the same weights at another path
    assert run(second, 2, "--dtype", "float32") == 0  # the stored dtype, named
    shutil.copy(os.path.join("nabla_jax/testbed/models/verifier", "model.safetensors"), second)
    capsys.readouterr()
    assert run(second, 3) == 2  # other weights of the same shapes
    assert "policy: the checkpoint's content (weights, config or tokenizer) changed" in capsys.readouterr().err
    assert len(open(os.path.join(out, "records.jsonl")).read().splitlines()) == 2


def test_a_directory_written_before_content_hashes_resumes_by_path():
    from nabla_jax.evaluation.identity import comparable, model_identity

    new = model_identity(POLICY, None)
    assert new["dtype"] == "float32" and len(new["sha256"]) == 64
    same = {"path": os.path.abspath(POLICY), "dtype": "stored"}
    old, cur = comparable(same, new)
    assert old == cur
    old, cur = comparable({**same, "path": "/elsewhere"}, new)
    assert old != cur
    reward = model_identity("likelihood:" + POLICY, None)
    old, cur = comparable({"path": "likelihood:" + POLICY, "dtype": "stored"}, reward)
    assert old == cur and reward["use"] == "likelihood"


def test_hash_cache_reuses_unchanged_files(tmp_path, monkeypatch):
    from nabla_jax.evaluation import identity

    monkeypatch.setenv("NABLA_JAX_CACHE_DIR", str(tmp_path / "cache"))
    directory = copy_model(POLICY, tmp_path / "p")
    first = identity.content_sha256(directory)
    hashed = []
    real = identity.hashlib.sha256
    monkeypatch.setattr(identity.hashlib, "sha256", lambda *a: hashed.append(a) or real(*a))
    assert identity.content_sha256(directory) == first
    assert len(hashed) == 1  # only the combining digest: every file came from the cache
    poison(directory, "model.norm.weight", index=(0,), value=2.0)
    assert identity.content_sha256(directory) != first


# --- seeds -------------------------------------------------------------------------------------------------------


def test_seeds_are_64_bit():
    import jax

    from nabla_jax.seeds import seed_key

    data = lambda s: np.asarray(jax.random.key_data(seed_key(s)))  # noqa: E731
    assert (data(5) == np.asarray(jax.random.key_data(jax.random.key(5)))).all()  # earlier results unchanged
    assert not (data(0) == data(2**32)).all()
    assert not (data(1) == data(2**32 + 1)).all()
    data(2**64 - 1)
    for bad in (-1, 2**64, 1.5, True):
        with pytest.raises(ValueError):
            seed_key(bad)


def test_distinct_seeds_past_2_to_the_32_sample_differently(tmp_path):
    from nabla_jax.evaluation.records import load_directory

    out = str(tmp_path / "out")
    assert main(EVAL + ["--method", "sc@2", "--policy", POLICY, "--seeds", f"0,{2**32}", "--out", out]) == 0
    records = load_directory(out)[1]
    by_seed = {}
    for r in records:
        by_seed.setdefault(r["seed"], []).append([c["tokens"] for c in r["candidates"]] + [r["text"]])
    assert by_seed[0] != by_seed[2**32]


# --- HF export: whole or not at all ------------------------------------------------------------------------------


def test_hf_export_killed_mid_write_leaves_nothing_and_a_rerun_works(tmp_path, monkeypatch):
    import convert.hf

    dst = tmp_path / "hf"

    def killed(tensors, file):
        open(file, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(convert.hf, "_save", killed)
    assert main(["convert", POLICY, str(dst), "--to", "hf"]) == 130  # interrupted: a message, no traceback
    assert not dst.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".convert-")]
    monkeypatch.undo()
    assert main(["convert", POLICY, str(dst), "--to", "hf"]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(dst).st_mode & 0o777 == 0o777 & ~mask
    for name in os.listdir(dst):
        assert os.stat(dst / name).st_mode & 0o777 == 0o666 & ~mask, name
    assert main(["generate", "--policy", str(dst), "--prompt", "1+1", "--max-new-tokens", "2"]) == 0


# --- report: no mixed tables, unique names -------------------------------------------------------------------------


def test_report_separates_runs_of_other_settings_and_names_rows_uniquely(tmp_path, capsys):
    runs = []
    for parent, tokens in (("a", "8"), ("b", "10")):
        out = str(tmp_path / parent / "run")
        assert main(["eval", "--benchmark", "testbed", "--limit", "1", "--max-new-tokens", tokens, "--no-progress",
                     "--method", "greedy", "--policy", POLICY, "--out", out]) == 0
        runs.append(out)
    capsys.readouterr()
    assert main(["report", *runs, "--out", str(tmp_path / "report"), "--paired", "greedy,greedy"]) == 0
    text = capsys.readouterr().out
    assert "differ in benchmark or decoding settings" in text
    assert "### Group 1: benchmark testbed" in text and "decoding max_new_tokens=8" in text
    assert "| a/run | greedy" in text and "| b/run | greedy" in text
    assert "| a/run | greedy | greedy |" in text  # the paired table names runs the same way
    assert os.path.exists(tmp_path / "report" / "accuracy_vs_calls.group2.png")
