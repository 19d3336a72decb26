"""Multi-process evaluation through jax.distributed: two real processes on localhost (CPU, gloo) evaluate every
other batch into their own shards, and process 0 merges them into exactly the records (same content, same order)
of a single-process run; a killed multi-process run's shards are picked up by the next run, with one process or
with several. Subprocesses share a persistent JAX compilation cache, so only the first one compiles."""

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import pytest

from nabla_jax.distributed import Processes, initialize, launched_by_cluster
from tests.evaluation.test_eval_run import VOLATILE, subprocess_env, write_benchmark

TIMEOUT = 240


@pytest.fixture(scope="module")
def setup(hf_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    bench = write_benchmark(root)
    policy_dir, _ = hf_checkpoint("llama")
    env = subprocess_env(root)
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    # 3 problems in batches of 1, two seeds: process 0 gets batches 0 and 2, process 1 batch 1
    args = ["eval", "--benchmark", str(bench), "--method", "greedy,sc@2", "--policy", policy_dir,
            "--seeds", "0,1", "--max-new-tokens", "8", "--batch-size", "1", "--no-progress"]
    return dict(root=root, args=args, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_single(setup, out):
    run = subprocess.run([sys.executable, "-m", "nabla_jax.cli", *setup["args"], "--out", str(out)],
                         env=setup["env"], capture_output=True, text=True, timeout=TIMEOUT)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def run_two(setup, out):
    """Both processes of a 2-process run; returns their stdouts."""
    port = free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "nabla_jax.cli", *setup["args"], "--out", str(out),
                          "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
                         env=setup["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, stderr[-3000:]
            outputs.append(stdout)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


def read_lines(directory):
    data = open(os.path.join(directory, "records.jsonl"), "rb").read()
    assert data.endswith(b"\n")
    return data.splitlines(keepends=True)


def stable(directory):
    """The records in file order, without the fields that may differ between two runs."""
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in read_lines(directory)]


def shards(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("records.process-"))


@pytest.fixture(scope="module")
def single(setup):
    out = setup["root"] / "single"
    assert "wrote 12 records" in run_single(setup, out)
    return out


def test_two_processes_merge_into_the_single_process_records(setup, single):
    out = setup["root"] / "two"
    first, second = run_two(setup, out)
    assert f"wrote 12 records to {out}" in first
    assert "process 1 of 2: wrote 4 records" in second and "wrote 12 records" not in second
    assert stable(out) == stable(single)  # same records in the same order
    assert shards(out) == []
    assert json.load(open(out / "fingerprint.json")) == json.load(open(single / "fingerprint.json"))


def leave_shards(single, out):
    """What a killed 2-process run could leave: records 0-3 merged, 4-7 in shards (record 3 merged and still in
    its shard, as a kill between the rename and the deletion leaves it; a half-written last line), 8-11 missing."""
    os.makedirs(out)
    shutil.copy(single / "fingerprint.json", out)
    lines = read_lines(single)
    (out / "records.jsonl").write_bytes(b"".join(lines[:4]))
    (out / "records.process-0.jsonl").write_bytes(lines[3] + lines[4] + lines[6] + b'{"method": "gre')
    (out / "records.process-1.jsonl").write_bytes(lines[5] + lines[7])


def test_killed_multi_process_run_resumes_with_one_process(setup, single):
    out = setup["root"] / "resume-single"
    leave_shards(single, out)
    assert "wrote 4 records" in run_single(setup, out)
    assert stable(out) == stable(single)
    assert shards(out) == []


def test_killed_multi_process_run_resumes_with_two_processes(setup, single):
    out = setup["root"] / "resume-two"
    leave_shards(single, out)
    first, _ = run_two(setup, out)
    assert "wrote 8 records" in first  # 4 from the old shards, 4 computed now
    assert stable(out) == stable(single)
    assert shards(out) == []


def test_single_process_unless_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append(a))
    assert initialize(environ={}) == Processes(0, 1) and not calls
    assert Processes().is_main and not Processes(1, 2).is_main
    Processes().barrier("no-op with one process")
    assert launched_by_cluster({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert launched_by_cluster({"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "4"})
    assert not launched_by_cluster({"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "1"})
    assert launched_by_cluster({"OMPI_COMM_WORLD_SIZE": "2"}) and not launched_by_cluster({"OMPI_COMM_WORLD_SIZE": "1"})
    initialize(environ={"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert calls == [(None, None, None)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(coordinator="localhost", num_processes=2, process_id=0), "must be HOST:PORT"),
    (dict(coordinator="localhost:1234", num_processes=0, process_id=0), "--num-processes must be >= 1"),
    (dict(coordinator="localhost:1234", num_processes=2, process_id=2), r"--process-id must be in \[0, 2\)"),
    (dict(coordinator="localhost:1234"), "needs --coordinator, --num-processes and --process-id together"),
])
def test_bad_distributed_flags_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        initialize(**kwargs, environ={})
