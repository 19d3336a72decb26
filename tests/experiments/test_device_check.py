"""The prepared accelerator check (`experiments/device_check.py`) at toy sizes on the CPU: every part runs, its
numbers are finite, float32 parity with torch holds, and the budgets skip work instead of overrunning."""

import importlib
import json
import math
import os
import subprocess
import sys

import pytest

from tests.support import ROOT  # noqa: E402
MODULE = "experiments.device_check"  # run as ``python -m experiments.device_check`` from the repository root
PARTS = ("parity", "generation", "dto", "nabla", "memory", "compile")


def run_check(tmp_path, *args):
    out = tmp_path / "device_check.json"
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", MODULE, "--json", str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_small_check_runs_every_part_with_finite_numbers(tmp_path):
    report, printed = run_check(tmp_path, "--small", "--peak-tflops", "1")
    assert report["environment"]["backend"] == "cpu" and report["environment"]["versions"]["jax"]
    for name in PARTS:
        part = report["parts"][name]
        assert part["status"] == "ok", (name, part.get("error"))
        assert part["rows"], name
        for r in part["rows"]:
            assert r["metric"] != "skipped", r
            assert r["value"] is not None and math.isfinite(r["value"]), r  # a CPU has no memory stats: no peak row
        assert f"| {name} |" in printed
    parity = report["parts"]["parity"]["rows"]
    assert len(parity) == 6  # policy and reward; float32 at two precisions and a bfloat16 checkpoint
    for r in parity:
        bound = 1e-3 if "float32" in r["case"] else 0.05
        assert r["value"] < bound * max(1.0, r["reference"]), r
    generation = report["parts"]["generation"]["rows"]
    assert [r["reference"] > 0 and r["ratio"] > 0 for r in generation] == [True, True]
    dto = {r["metric"]: r for r in report["parts"]["dto"]["rows"]}
    assert dto["time per full step"]["value"] > 0 and 0 < dto["MFU"]["value"]
    assert "full steps run: 1" in dto["time per full step"]["note"]
    nabla = {r["metric"]: r for r in report["parts"]["nabla"]["rows"]}
    assert nabla["problems/s"]["value"] > 0 and nabla["MFU"]["value"] > 0
    memory = report["parts"]["memory"]["rows"]
    assert {r["case"] for r in memory} == {"nabla batch 2", "dto toy-qwen2"}
    assert all(r["reference"] > 0 and r["ratio"] > 0 for r in memory)  # against nabla-jax plan
    compiles = report["parts"]["compile"]["rows"]
    assert compiles[-1]["case"] == "all programs above" and compiles[-1]["value"] > 0


def test_spent_total_budget_skips_every_part_and_still_writes_the_table(tmp_path):
    report, printed = run_check(tmp_path, "--small", "--total-seconds", "0")
    for name in PARTS:
        part = report["parts"][name]
        assert part["status"] == "skipped"
        assert [r["note"] for r in part["rows"]] == ["skipped (total budget spent)"]
    assert "| parity | whole part | skipped |" in printed


def load_script():
    return importlib.import_module(MODULE)


def test_budget_skips_a_case_that_would_not_fit(monkeypatch):
    module = load_script()
    clock = iter([0.0, 10.0, 30.0, 45.0, 46.0])
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(clock))
    budget = module.Budget(50.0)  # starts at 0
    assert budget.next_case()  # t=10: nothing measured yet
    assert budget.next_case()  # t=30: the last case took 20 s, 30 + 20 <= 50
    assert not budget.next_case()  # t=45: the last case took 15 s, 45 + 15 > 50
    assert not budget.next_case()  # t=46: and every case after it


def test_peak_table_by_device_kind():
    module = load_script()
    assert module.peak_tflops("NVIDIA H200") == 989.0
    assert module.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert module.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert module.peak_tflops("TPU v5 lite") == 197.0
    assert module.peak_tflops("TPU v5") == 459.0
    assert module.peak_tflops("cpu") is None


def test_memory_rows_name_whose_peak_they_read():
    """The accelerator-only branch (a CPU keeps no memory statistics): peaks from allocator statistics against the
    plan, with a note saying whether the peak is this run's, its compilation's or an earlier run's."""
    from experiments import device_parts as parts
    from nabla_jax.dto import DTOConfig

    gib = 1 << 30
    record = dict(case="nabla batch 4", policy=parts.decoder_config("toy-qwen2"),
                  reward=parts.decoder_config("toy-qwen3", reward=True), batch=4, max_len=64, ahead=32,
                  dto=DTOConfig(), compiled=gib // 2, before={"peak_bytes_in_use": gib},
                  at_compile={"peak_bytes_in_use": gib}, after={"peak_bytes_in_use": 3 * gib})
    peak, footprint = parts.memory_rows(None, record)
    assert peak["value"] == 3.0 and peak["reference"] > 0 and peak["ratio"] == 3.0 / peak["reference"]
    assert peak["note"].endswith("set by this run") and footprint["value"] == 0.5
    notes = [parts.peak_note({"peak_bytes_in_use": 3 * gib}, None, record["after"]),
             parts.peak_note(record["before"], {"peak_bytes_in_use": 3 * gib}, record["after"])]
    assert notes == ["an earlier run peaked higher: not this run's own",
                     "set while compiling (autotuning buffers), not by the run"]
