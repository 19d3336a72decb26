"""Compiling once: the persistent compilation cache (on for every command, in $NABLA_JAX_CACHE_DIR/xla; a second
process compiles nothing the first compiled and writes the same records; the switches that turn it off;
``nabla-jax cache``), and calls with 1 to 8 prompts sharing one program."""

import json
import os
import subprocess
import sys

from tests.support import ROOT  # noqa: E402
EVAL = ["eval", "--benchmark", "testbed", "--limit", "2", "--max-new-tokens", "8", "--no-progress",
        "--method", "greedy,sc@2", "--policy", "testbed:policy"]
COUNT = ("import sys, json\n"
         "from nabla_jax.compile_count import compilations, compile_seconds\n"
         "from nabla_jax.cli import main\n"
         "code = main(json.loads(sys.argv[1]))\n"
         "print('COMPILATIONS', compilations(), code, compile_seconds())\n")


def _environment(cache_dir, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
    env.update(NABLA_JAX_CACHE_DIR=str(cache_dir), **extra)
    return env


def _run(args, env) -> int:
    """The compilations of a CLI call in a fresh process (and, asserted here, seconds compiling only with some)."""
    done = subprocess.run([sys.executable, "-c", COUNT, json.dumps(args)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    count, code, seconds = done.stdout.strip().splitlines()[-1].split()[1:]
    assert code == "0", done.stderr[-2000:]
    assert (float(seconds) > 0) == (int(count) > 0)
    return int(count)


def _records(directory):
    with open(os.path.join(directory, "records.jsonl"), encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [{k: v for k, v in row.items() if k not in ("wall_time_s", "compiled")} for row in rows]


def test_a_second_process_compiles_nothing_the_first_compiled(tmp_path):
    env = _environment(tmp_path / "cache")
    first = _run([*EVAL, "--out", str(tmp_path / "a")], env)
    assert first > 0 and os.listdir(tmp_path / "cache" / "xla")
    second = _run([*EVAL, "--out", str(tmp_path / "b")], env)
    assert second == 0
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    off = _run(["--no-compile-cache", *EVAL, "--out", str(tmp_path / "c")], env)
    assert off == first  # nothing read from the cache
    assert _run([*EVAL, "--out", str(tmp_path / "d")], _environment(tmp_path / "cache", NABLA_JAX_NO_COMPILE_CACHE="1")) == first


def test_a_second_process_reads_the_reasoner_program_instead_of_tracing_it(tmp_path):
    """The ∇-Reasoner's decode loop is kept whole beside the compilation cache (nabla_jax.program_cache): a second
    process reads the kept program (the file is not rewritten), compiles nothing and writes the same records."""
    env = _environment(tmp_path / "cache")
    args = ["eval", "--benchmark", "testbed", "--limit", "2", "--max-new-tokens", "8", "--no-progress",
            "--method", "nabla@2", "--policy", "testbed:policy", "--reward", "testbed:outcome"]
    assert _run([*args, "--out", str(tmp_path / "a")], env) > 0
    exports = tmp_path / "cache" / "xla" / "exports"
    stamp = lambda: {name: (os.stat(exports / name).st_ino, os.stat(exports / name).st_mtime_ns)  # noqa: E731
                     for name in os.listdir(exports)}
    kept = stamp()
    assert kept and all(name.endswith(".jaxexport") for name in kept)
    assert _run([*args, "--out", str(tmp_path / "b")], env) == 0
    assert stamp() == kept
    assert _records(tmp_path / "a") == _records(tmp_path / "b")


def test_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    from nabla_jax.cli import main

    monkeypatch.setenv("NABLA_JAX_CACHE_DIR", str(tmp_path))
    (tmp_path / "xla" / "exports").mkdir(parents=True)
    (tmp_path / "xla" / "entry").write_bytes(b"x" * 2048)
    (tmp_path / "xla" / "exports" / "program.jaxexport").write_bytes(b"x" * 1024)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'xla'}: 2 files" in out
    assert "of which exports/ (whole programs, read instead of traced): 1 files" in out
    assert main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out and not (tmp_path / "xla").exists()


def test_calls_with_one_to_eight_prompts_share_one_program():
    """Queues hold at least 8 entries (padding is never decoded), so at one row slot, calls with 1, 2, 3 and 5
    prompts hand XLA no new program after the first (counted as jit cache misses, whether XLA or the persistent
    cache then serves them), in generation and in the ∇-Reasoner, and the results do not depend on the call."""
    import nabla_jax
    from nabla_jax.compile_count import compile_requests
    from nabla_jax.reasoner import NablaConfig, NablaReasoner
    from nabla_jax.rewards import load_reward

    policy = nabla_jax.load_policy("testbed:policy")
    prompts = [f"what is {10 + i}+{20 + i}-{5 + i}?" for i in range(5)]
    reasoner = NablaReasoner(policy, load_reward("testbed:outcome"),
                             NablaConfig(max_new_tokens=16, max_n_generations=2, grad_threshold=None))
    for call in (lambda p: nabla_jax.generate(policy, p, max_new_tokens=16, temperature=0.0, batch_size=1),
                 lambda p: reasoner.generate(p, seed=0, batch_size=1)):
        first = call(prompts[:1])
        before = compile_requests()
        later = [call(prompts[:n]) for n in (2, 3, 5)]
        assert compile_requests() == before
        assert all(one.token_ids == first[0].token_ids for one in (r[0] for r in later))

