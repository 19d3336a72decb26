"""Run every method on one device and on several meshes; print one JSON summary per placement.

Run by ``tests/sharding/test_sharding.py`` in a subprocess, because the 8 host devices (``XLA_FLAGS``) must be set before
JAX starts::

    python tests/support/sharding_check.py POLICY_DIR REWARD_DIR BENCHMARK OUT_DIR "data=8:generation,eval" ...

The baseline is the same code on a 1-device mesh (the first device). Every run uses the same inputs, so two
summaries must agree: token ids and counters exactly, floats to rounding. Compilation dominates the time, so
programs are shared where the code allows: the direct ∇-Reasoner call, the eval's ``nabla@N`` and the CLI run
compile one program per placement, as do the sampled rollouts of the eval and ``generate``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import nabla_jax
from nabla_jax.cli import main as cli_main
from nabla_jax.dto import DTOConfig
from nabla_jax.evaluation.context import DecodeSettings
from nabla_jax.evaluation.datasets import load_benchmark
from nabla_jax.evaluation.runner import run_eval
from nabla_jax.generation import RolloutSpec, SamplingConfig, rollout_batch
from nabla_jax.generation.buckets import bucket_length, pad_prompts
from nabla_jax.generation.prompts import eos_token_ids
from nabla_jax.templates import chat_prompt_ids, pad_token_id
from nabla_jax.reasoner import NablaConfig, NablaReasoner
from nabla_jax.sharding import make_mesh, params_mesh, shard_batch

PROMPTS = ["12+7=?", "what is 3*4", "Compute 5-2 step by step", "x", "2+2", "hello there", "9-3=?", "abc"] * 2
NEW_TOKENS = 8
N = 4  # candidates for sc/bon, rollout budget for nabla
# carry_prefix off: on a multi-device mesh the reasoner rebuilds the prefix (reasoner/api.py), so the one-device
# baseline does too and the flops statistics compare
NABLA = dict(max_iters=3, resample_top_k=0, confidence_threshold=0.95, grad_threshold=2.0, carry_prefix=False)
SETTINGS = DecodeSettings(max_new_tokens=NEW_TOKENS, temperature=1.0, top_k=0, top_p=1.0)
# what the eval's nabla@N runs (so the direct call and the eval share one compiled decode_batch)
REASONER = NablaConfig.from_settings(**NABLA).replace(max_n_generations=N, max_new_tokens=NEW_TOKENS, rollout_temperature=1.0,
                                        rollout_top_k=0, rollout_top_p=1.0)
EVAL_METHODS = "greedy,sc,bon,nabla"
VOLATILE = ("wall_time_s", "compiled")


def floats(x) -> list:
    return np.asarray(x, np.float64).tolist()


def spec_of(x) -> str:
    return str(getattr(x.sharding, "spec", "single"))


def generation(policy) -> dict:
    tokenizer, config = policy.tokenizer, policy.config
    ids = [chat_prompt_ids(tokenizer, p) for p in PROMPTS]
    spec = RolloutSpec(NEW_TOKENS, SamplingConfig(1.0), eos_token_ids(config, tokenizer), (),
                       pad_token_id(config, tokenizer))
    width = bucket_length(max(map(len, ids)))
    buffer, lengths = pad_prompts(ids, width, spec.pad_id)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(len(ids), dtype=jnp.uint32))
    batch = shard_batch((jnp.asarray(buffer), jnp.asarray(lengths), keys), params_mesh(policy.params))
    out = rollout_batch(config, policy.params, spec, *batch)
    generated = nabla_jax.generate(policy, PROMPTS, max_new_tokens=NEW_TOKENS, temperature=1.0, seed=0,
                                   batch_size=len(PROMPTS))
    return {
        "rollout_tokens": np.asarray(out.tokens).tolist(),
        "rollout_length": np.asarray(out.length).tolist(),
        "rollout_latents": floats(out.latents),
        "rollout_spec": spec_of(out.tokens),
        "generate_tokens": [r.token_ids for r in generated],
        "generate_finish": [r.finish_reason for r in generated],
        "logits": floats(policy.logits(buffer[:2], np.arange(width)[None] < lengths[:2, None])),
    }


def dto(policy, reward) -> dict:
    rng = np.random.default_rng(0)
    ahead = [[10, 11, 12], [20, 21, 22, 23]]
    init = [rng.normal(size=(len(a), policy.config.vocab_size)).astype(np.float32) * 2 for a in ahead]
    results = nabla_jax.dto_optimize(policy, reward, PROMPTS[:2], [[], [30]], ahead, init,
                                     DTOConfig(max_iters=4, learning_rate=0.3), seed=1)
    return {
        "token_ids": [r.token_ids.tolist() for r in results],
        "counts": [[r.full_steps, r.cached_steps, r.executed_full_steps] for r in results],
        "floats": [[r.loss, r.loglik, r.reward] for r in results],
        "logits": [floats(r.logits) for r in results],
        "loss_trace": [floats(r.loss_trace) for r in results],
    }


def reasoner(policy, reward, benchmark) -> dict:
    problems = load_benchmark(benchmark).problems
    results = NablaReasoner(policy, reward, REASONER).generate([p.problem for p in problems], seed=3,
                                                               batch_size=len(problems))
    return {
        "token_ids": [r.token_ids for r in results],
        "stats": [{k: v for k, v in r.stats.items() if "wall" not in k and k != "flops"} for r in results],
        "flops": [r.stats["flops"] for r in results],
        "revisions": [[(v.position, v.accepted, v.current, v.proposed) for v in r.revisions] for r in results],
        "revision_rewards": [[(v.reward_current, v.reward_proposed) for v in r.revisions] for r in results],
    }


def cli_run(policy_dir, reward_dir, benchmark, mesh_spec) -> list:
    """``nabla-jax run --mesh ...`` with the settings of :data:`REASONER` (its compiled program is reused)."""
    flags = {"max_n_generations": N, "max_new_tokens": NEW_TOKENS, "rollout_temperature": 1.0, "rollout_top_k": 0,
             "rollout_top_p": 1.0, **NABLA}
    args = ["run", "--policy", policy_dir, "--reward", reward_dir, "--seed", "3", "--batch-size", "4", "--json",
            "--mesh", mesh_spec]
    for problem in load_benchmark(benchmark).problems:
        args += ["--prompt", problem.problem]
    for name, value in flags.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli_main(args) == 0
    return [json.loads(line)["token_ids"] for line in printed.getvalue().splitlines()]


def evaluation(policy, reward, benchmark, out, methods) -> list:
    run_eval(benchmark, methods, policy, reward, out=out, seeds=(0,), ns=(N,), settings=SETTINGS,
             batch_size=4, options={"nabla": NablaConfig.from_settings(**NABLA)}, progress=False, keep_texts=True)
    with open(os.path.join(out, "records.jsonl")) as handle:
        records = [json.loads(line) for line in handle]
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in records),
                  key=lambda r: (r["method"], r["problem_id"]))


def timed(name, fn, *args):
    began = time.perf_counter()
    result = fn(*args)
    print(f"{name}: {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return result


def summary(policy_dir, reward_dir, benchmark, out, name, mesh, parts) -> dict:
    policy = nabla_jax.load_policy(policy_dir, mesh=mesh)
    reward = nabla_jax.load_reward(reward_dir, mesh=mesh)
    q_kernel = policy.params["layers"]["attn"]["q_proj"]["kernel"]
    directory = os.path.join(out, name.replace(",", "_").replace("=", ""))
    runs = {
        "generation": lambda: generation(policy),
        "dto": lambda: dto(policy, reward),
        "reasoner": lambda: reasoner(policy, reward, benchmark),
        "eval": lambda: evaluation(policy, reward, benchmark, directory, EVAL_METHODS),
        "eval_rollouts": lambda: evaluation(policy, reward, benchmark, directory, EVAL_METHODS.replace(",nabla", "")),
        "cli_run": lambda: cli_run(policy_dir, reward_dir, benchmark, name),
    }
    out = {"q_proj_spec": spec_of(q_kernel), "q_proj_devices": len(q_kernel.sharding.device_set)}
    out.update({part: timed(f"{name} {part}", runs[part]) for part in parts})
    return out


def main(policy_dir, reward_dir, benchmark, out, *placements) -> None:
    """Each placement is ``MESH_SPEC:PART,PART`` (parts: see :func:`summary`); the baseline runs every part but
    ``cli_run``."""
    assert jax.device_count() == 8, f"expected 8 host devices, got {jax.device_count()}"
    runs = {"single": (make_mesh("data=1", jax.devices()[:1]), ["generation", "dto", "reasoner", "eval"])}
    for placement in placements:
        spec, _, parts = placement.partition(":")
        runs[spec] = (make_mesh(spec), parts.split(","))
    print(json.dumps({name: summary(policy_dir, reward_dir, benchmark, out, name, mesh, parts)
                      for name, (mesh, parts) in runs.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
