"""End to end through the CLI on small random models: every method on three problems and two seeds, a run killed
with SIGKILL part-way and resumed (same records as an uninterrupted run: none lost, none duplicated), a refused
configuration change, a no-op rerun, and the report.

The eval runs are subprocesses sharing a persistent JAX compilation cache, so only the first one compiles."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from nabla_jax.cli import main as cli_main
from nabla_jax.templates import reward_template_ids
from nabla_jax.evaluation.accounting import reward_cost, rollout_cost
from nabla_jax.evaluation.grading import get_grader
from nabla_jax.evaluation.methods import vote
from nabla_jax.generation import chat_prompt_ids
from nabla_jax.loading import load_policy
from nabla_jax.rewards import load_reward

PROBLEMS = [("p-add", "2+3=?", "5"), ("p-frac", "1/2+1/4=?", "\\frac{3}{4}"), ("p-mul", "7*6=?", "42")]
METHODS = ["greedy", "sc@1", "sc@2", "bon@1", "bon@2", "wbon@1", "wbon@2"]
SEEDS = (0, 1)
MAX_NEW = 12
SLOW_APPEND = (
    "import sys, time\n"
    "from nabla_jax.evaluation.records import RecordStore\n"
    "append = RecordStore.append\n"
    "def slow(self, record):\n"
    "    append(self, record)\n"
    "    time.sleep(0.25)\n"
    "RecordStore.append = slow\n"
    "from nabla_jax.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
VOLATILE = ("wall_time_s", "compiled")  # the only fields that may differ between two runs


def write_benchmark(root):
    """PROBLEMS as a benchmark file under ``root``."""
    bench = root / "tiny.jsonl"
    bench.write_text("".join(json.dumps({"id": i, "problem": p, "answer": a}) + "\n" for i, p, a in PROBLEMS))
    return bench


def subprocess_env(root) -> dict:
    """The environment of CLI subprocesses: CPU, and a persistent compilation cache under ``root`` that they share."""
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(root / "jax-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


@pytest.fixture(scope="module")
def setup(hf_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    bench = write_benchmark(root)
    policy_dir, policy_torch = hf_checkpoint("llama")
    reward_dir, reward_torch = hf_checkpoint("llama_cls")
    env = subprocess_env(root)
    args = [
        "eval", "--benchmark", str(bench), "--method", "greedy,sc,bon,wbon", "--n", "1,2",
        "--policy", policy_dir, "--reward", reward_dir, "--seeds", ",".join(map(str, SEEDS)),
        "--max-new-tokens", str(MAX_NEW), "--batch-size", "1", "--keep-texts", "--no-progress",
    ]
    return dict(root=root, bench=bench, args=args, env=env, policy=(policy_dir, policy_torch),
                reward=(reward_dir, reward_torch))


def read_records(directory):
    data = open(os.path.join(directory, "records.jsonl"), "rb").read()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def keyed(records):
    out = {}
    for r in records:
        key = (r["method"], r["problem_id"], r["seed"])
        assert key not in out, f"duplicate record {key}"
        out[key] = {k: v for k, v in r.items() if k not in VOLATILE}
    return out


@pytest.fixture(scope="module")
def killed_and_resumed(setup):
    """Run with slowed appends, SIGKILL it after a few records, leave a half-written line, then rerun."""
    out = str(setup["root"] / "killed")
    records = os.path.join(out, "records.jsonl")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_APPEND, *setup["args"], "--out", out], env=setup["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while True:
        lines = open(records, "rb").read().count(b"\n") if os.path.exists(records) else 0
        if lines >= 5:
            break
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.communicate()[1].decode()[-2000:]}")
        assert time.monotonic() < deadline, "no records appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    partial = len(read_records(out))
    assert 5 <= partial < len(METHODS) * len(PROBLEMS) * len(SEEDS)
    with open(records, "ab") as f:
        f.write(b'{"method": "sc@2", "problem_id": "p-m')  # what a kill in the middle of a write leaves
    resumed = subprocess.run([sys.executable, "-m", "nabla_jax.cli", *setup["args"], "--out", out],
                             env=setup["env"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return out, partial, resumed.stdout


@pytest.fixture(scope="module")
def uninterrupted(setup, killed_and_resumed):
    out = str(setup["root"] / "full")
    run = subprocess.run([sys.executable, "-m", "nabla_jax.cli", *setup["args"], "--out", out], env=setup["env"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_killed_run_resumes_to_exactly_the_uninterrupted_records(killed_and_resumed, uninterrupted):
    out, partial, stdout = killed_and_resumed
    total = len(METHODS) * len(PROBLEMS) * len(SEEDS)
    assert f"wrote {total - partial} records" in stdout
    resumed, full = keyed(read_records(out)), keyed(read_records(uninterrupted))
    assert len(read_records(out)) == len(read_records(uninterrupted)) == total
    assert set(full) == {(m, p[0], s) for m in METHODS for p in PROBLEMS for s in SEEDS}
    assert resumed == full


def test_every_method_end_to_end(setup, uninterrupted):
    records = keyed(read_records(uninterrupted))
    policy_dir, policy_torch = setup["policy"]
    reward_dir, reward_torch = setup["reward"]
    policy, reward = load_policy(policy_dir), load_reward(reward_dir)
    grader = get_grader("math")
    for pid, problem, gold in PROBLEMS:
        prompt = chat_prompt_ids(policy.tokenizer, problem)
        prefix, postfix = reward_template_ids(reward.tokenizer, problem)
        with torch.no_grad():
            hf = policy_torch.generate(torch.tensor([prompt]), max_new_tokens=MAX_NEW, do_sample=False)
        hf_ids = hf[0, len(prompt) :].tolist()
        for seed in SEEDS:
            rec = {m: records[m, pid, seed] for m in METHODS}
            greedy = rec["greedy"]
            assert greedy["candidates"][0]["token_ids"] == hf_ids  # greedy = transformers' greedy decode
            assert greedy == {**records["greedy", pid, SEEDS[0]], "seed": seed}  # seed-independent
            cands = rec["sc@2"]["candidates"]
            assert rec["sc@1"]["candidates"] == cands[:1]  # the first k of N are the k-candidate run's
            for m in ("bon@2", "wbon@2"):
                assert [c["token_ids"] for c in rec[m]["candidates"]] == [c["token_ids"] for c in cands]
            for m, r in rec.items():
                assert r["correct"] == grader.equivalent(r["answer"], gold)
                assert r["text"] == r["candidates"][r["chosen"] or 0]["text"]
                uses_reward = m.startswith(("bon", "wbon"))
                n = len(r["candidates"])
                cost = sum((rollout_cost(policy.config, len(prompt), c["tokens"]) for c in r["candidates"][1:]),
                           rollout_cost(policy.config, len(prompt), r["candidates"][0]["tokens"]))
                tokens = sum(c["tokens"] for c in r["candidates"])
                assert r["generated_tokens"] == tokens and r["rollouts"] == n
                assert r["official_calls"] == tokens + (n if uses_reward else 0)
                assert r["full_calls"] == r["official_calls"] + n
                assert r["reward_calls"] == (n if uses_reward else 0)
                flops = cost.flops
                for c in r["candidates"] if uses_reward else []:
                    sequence = prefix + c["token_ids"] + postfix  # the final EOS kept, the official rule
                    with torch.no_grad():
                        expected = reward_torch(torch.tensor([sequence])).logits[0, 0].item()
                    assert c["reward"] == pytest.approx(expected, abs=1e-4)
                    flops += reward_cost(reward.config, len(sequence)).flops
                assert r["flops"] == pytest.approx(flops)
            rewards = [c["reward"] for c in rec["bon@2"]["candidates"]]
            assert rec["bon@2"]["chosen"] == int(np.argmax(rewards))
            answers = [c["answer"] for c in cands]
            assert rec["sc@2"]["chosen"] == vote(answers, [1, 1], grader.equivalent)
            weights = np.exp(np.asarray(rewards) - max(rewards))
            assert rec["wbon@2"]["chosen"] == vote(answers, list(weights), grader.equivalent)
    # sampling varies with the seed
    assert any(records["sc@2", p, 0]["candidates"] != records["sc@2", p, 1]["candidates"] for p, _, _ in PROBLEMS)


def test_rerun_is_a_no_op_and_a_changed_configuration_is_refused(setup, uninterrupted, capsys):
    path = os.path.join(uninterrupted, "records.jsonl")
    before = open(path, "rb").read()
    assert cli_main([*setup["args"], "--out", uninterrupted]) == 0
    assert "wrote 0 records" in capsys.readouterr().out
    assert cli_main([*setup["args"], "--temperature", "0.7", "--out", uninterrupted]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "decode.temperature: 0.6 -> 0.7" in err
    assert open(path, "rb").read() == before


def test_malformed_benchmark_line_fails_before_anything_is_written(setup, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(setup["bench"].read_text() + '{"id": "x", "problem": "1+1"}\n')
    args = [a if a != str(setup["bench"]) else str(bad) for a in setup["args"]]
    assert cli_main([*args, "--out", str(tmp_path / "out")]) == 2
    assert f"{bad}:4: missing required field 'answer'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_table_summary_and_plots(uninterrupted, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli_main(["report", uninterrupted, "--out", str(out), "--budget", "calls=30", "--matched", "flops"]) == 0
    table = capsys.readouterr().out
    for method in METHODS:
        assert f"| {method} |" in table
    assert "Matched budget: official_calls <= 30" in table
    assert "Matched flops" in table
    summary = json.load(open(out / "summary.json"))
    assert {c["method"] for c in summary["matched_cost"]} == {m for m in METHODS if not m.startswith("bon")}
    rows = {row["method"]: row for row in summary["runs"][0]["methods"]}
    records = read_records(uninterrupted)
    for method, row in rows.items():
        mine = [r for r in records if r["method"] == method]
        per_seed = [np.mean([r["correct"] for r in mine if r["seed"] == s]) for s in SEEDS]
        assert row["accuracy"] == pytest.approx(np.mean(per_seed))
        assert row["official_calls"] == pytest.approx(np.mean([r["official_calls"] for r in mine]))
    assert set(rows["sc@2"]["pass@k"]) == {"1", "2"} and set(rows["sc@2"]["maj@k"]) == {"1", "2"}
    for name in ("results.md", "accuracy_vs_calls.png", "accuracy_vs_flops.png"):
        assert (out / name).stat().st_size > 0
