"""Ctrl-C and non-finite settings: an interrupted run exits 130 with a message and no traceback, and the same
command resumes it exactly; inf and nan are refused for every float setting, by name, before anything runs."""

import subprocess
import sys

import pytest

from nabla_jax.cli import main
from tests.commands.test_compile_cache import ROOT, _environment, _records


def test_ctrl_c_exits_130_with_a_message_and_the_rerun_resumes_exactly(tmp_path):
    """SIGINT to a running eval after its first records: exit 130, "interrupted after N records; rerun ...", no
    traceback; the same command again finishes the rest, and the records equal an uninterrupted run's."""
    import signal
    import time

    env = _environment(tmp_path / "cache")
    args = ["eval", "--benchmark", "testbed", "--limit", "40", "--max-new-tokens", "16", "--no-progress",
            "--method", "greedy", "--batch-size", "1", "--policy", "testbed:policy"]
    command = [sys.executable, "-m", "nabla_jax.cli"]
    assert subprocess.run([*command, *args, "--out", str(tmp_path / "whole")], env=env, cwd=ROOT,
                          capture_output=True, timeout=600).returncode == 0
    records = tmp_path / "cut" / "records.jsonl"
    process = subprocess.Popen([*command, *args, "--out", str(tmp_path / "cut")], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (records.exists() and records.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted after" in err and "rerun the same command to resume" in err and "Traceback" not in err
    assert records.read_text().count("\n") < 40  # it stopped early
    assert subprocess.run([*command, *args, "--out", str(tmp_path / "cut")], env=env, cwd=ROOT,
                          capture_output=True, timeout=600).returncode == 0
    assert _records(tmp_path / "whole") == _records(tmp_path / "cut")



@pytest.mark.parametrize("argv", [
    ["generate", "--policy", "testbed:policy", "--prompt", "1", "--temperature", "inf"],
    ["eval", "--benchmark", "testbed", "--method", "wbon@2", "--policy", "testbed:policy", "--wbon-temperature", "nan"],
    ["run", "--policy", "testbed:policy", "--reward", "testbed:outcome", "--prompt", "1", "--learning-rate", "inf"],
    ["run", "--policy", "testbed:policy", "--reward", "testbed:outcome", "--prompt", "1", "--confidence-threshold", "nan"],
    ["eval", "--benchmark", "testbed", "--method", "bon@2", "--policy", "testbed:policy", "--reward",
     "likelihood:testbed:verifier", "--reward-clip=-inf"],
])
def test_non_finite_settings_are_refused_by_name(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "out")] if argv[0] == "eval" else argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "must be a finite number" in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_the_library_refuses_an_infinite_temperature():
    from nabla_jax.generation.sampling import SamplingConfig

    with pytest.raises(ValueError, match="temperature must be a finite number"):
        SamplingConfig(float("inf"))
    with pytest.raises(ValueError, match="repetition_penalty must be a finite number"):
        SamplingConfig(0.5, repetition_penalty=float("nan"))


def test_ctrl_c_during_a_first_compile_exits_130_without_a_crash(tmp_path):
    """Interrupts while the first programs compile (an empty compile cache) end in 130, never in a crash of the
    interpreter's teardown (SIGSEGV, seen before the program ended at once after an interrupt)."""
    import signal
    import time

    for wait in (3.0, 6.0):
        env = _environment(tmp_path / f"cache{wait}")
        process = subprocess.Popen(
            [sys.executable, "-m", "nabla_jax.cli", "eval", "--benchmark", "testbed", "--limit", "8",
             "--max-new-tokens", "16", "--no-progress", "--method", "greedy,bon@2", "--policy", "testbed:policy",
             "--reward", "testbed:outcome", "--out", str(tmp_path / f"out{wait}")],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(wait)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
        if process.returncode == 0:
            continue  # it finished first: nothing to interrupt
        assert process.returncode == 130, err[-2000:]
        assert "rerun the same command to resume" in err and "Traceback" not in err
