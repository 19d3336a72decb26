"""The evaluation loop: for each seed, batches of unfinished problems through every method, one record per
(method key, problem, seed) appended as soon as its batch finishes.

Problems are ordered by prompt-length bucket and cut into batches of ``batch_size``; every method runs on the
batch before the next one starts (so sc/bon/wbon share one set of candidates). Batches are cut from the whole
problem list, never from what is left, and a batch with any record missing is redone whole, writing only the
missing records: a resumed run computes every record in the same batch, with the same shapes, as an uninterrupted
run, so the records are identical (outcomes depend on (seed, problem index) alone; the fixed batches also keep
XLA's floating-point rounding, which may depend on the batch shape, the same). ``wall_time_s`` is the batch's
time shared among its problems; ``compiled`` marks the records of a batch during which anything compiled (the
report leaves those out of the mean wall time when others exist). A batch's records are written once all its
methods have run.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from collections.abc import Sequence

from nabla_jax.evaluation.context import DecodeSettings, EvalContext
from nabla_jax.evaluation.datasets import Benchmark, Problem, load_benchmark
from nabla_jax.evaluation.methods import METHODS, MethodSpec, Outcome, method_key
from nabla_jax.evaluation.records import RecordStore

KEY_RULE = "fold_in(fold_in(key(seed), problem_index), sample_index)"


def parse_methods(text: str, ns: Sequence[int]) -> list[tuple[MethodSpec, tuple[int, ...]]]:
    """``"greedy,sc,bon@4"`` -> specs with their budgets; a name without ``@n`` takes ``ns``."""
    chosen: dict[str, list[int]] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, n = entry.partition("@")
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
        spec = METHODS[name]
        if not spec.uses_n:
            if n:
                raise ValueError(f"method {name!r} takes no @n")
            budgets = [1]
        elif n:
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"bad budget in {entry!r}: expected {name}@N with N >= 1")
            budgets = [int(n)]
        else:
            budgets = list(ns)
        chosen.setdefault(name, [])
        chosen[name] += [b for b in budgets if b not in chosen[name]]
    if not chosen:
        raise ValueError("no method given")
    return [(METHODS[name], tuple(sorted(budgets))) for name, budgets in chosen.items()]


def model_identity(path: str | None, dtype: str | None) -> dict | None:
    if path is None:
        return None
    return {"path": os.path.abspath(path) if os.path.exists(path) else path, "dtype": dtype or "stored"}


def fingerprint(
    benchmark: Benchmark,
    settings: DecodeSettings,
    methods: Sequence[tuple[MethodSpec, tuple[int, ...]]],
    policy: str,
    reward: str | None,
    dtype: str | None,
    options: dict,
) -> dict:
    """What determines a record's content (see :mod:`nabla_jax.evaluation.records`)."""
    try:
        version = importlib.metadata.version("nabla-jax")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    shared = {
        "benchmark": {"name": benchmark.name, "sha256": benchmark.sha256, "grader": benchmark.grader.name},
        "policy": model_identity(policy, dtype),
        "decode": dataclasses.asdict(settings),
        "code_version": version,
        "keys": KEY_RULE,
    }
    per_method = {}
    for spec, ns in methods:
        for n in ns:
            entry = {"method": spec.name, "n": n if spec.uses_n else None, **spec.settings(options)}
            if spec.needs_reward:
                entry["reward"] = model_identity(reward, dtype)
            per_method[method_key(spec, n)] = entry
    return {"shared": shared, "methods": per_method}


def _compilations(methods) -> int:
    """Executables compiled so far by the rollout and scoring functions and the methods' own (-1 if unknown)."""
    from nabla_jax import loading
    from nabla_jax.generation import rollouts

    try:
        count = rollouts.rollout_batch._cache_size() + loading._scores._cache_size()
    except AttributeError:
        return -1
    return count + sum(spec.compilations() for spec, _ in methods if spec.compilations is not None)


def make_record(ctx: EvalContext, spec: MethodSpec, n: int, problem: Problem, seed: int, outcome: Outcome,
                compiled: bool, keep_texts: bool, grades: dict) -> dict:
    def correct(answer):
        if (answer, problem.answer) not in grades:
            grades[answer, problem.answer] = bool(ctx.grader.equivalent(answer, problem.answer))
        return grades[answer, problem.answer]

    candidates = []
    for c in outcome.candidates:
        entry = {**c.summary(), "correct": correct(c.answer)}
        if keep_texts:
            entry["text"], entry["token_ids"] = c.text, list(c.token_ids)
        candidates.append(entry)
    return {
        "method": method_key(spec, n),
        "method_name": spec.name,
        "n": n if spec.uses_n else None,
        "benchmark": ctx.benchmark.name,
        "problem_id": problem.id,
        "problem_index": problem.index,
        "seed": seed,
        "gold": problem.answer,
        "answer": outcome.answer,
        "correct": correct(outcome.answer),
        "text": outcome.text,
        "chosen": outcome.chosen,
        "candidates": candidates,
        **outcome.cost.as_dict(),
        "wall_time_s": outcome.wall_time_s,
        "compiled": compiled,
        "stats": outcome.stats,
    }


def evaluate(
    ctx: EvalContext,
    store: RecordStore,
    methods: Sequence[tuple[MethodSpec, tuple[int, ...]]],
    seeds: Sequence[int],
    batch_size: int = 8,
    progress: bool = True,
    keep_texts: bool = False,
) -> int:
    """Produce every missing record; returns how many were written."""
    from tqdm import tqdm

    problems = list(ctx.benchmark.problems)
    for p in problems:
        ctx.prompt_ids(p)  # every length error before any work
    keys = {(spec.name, n): method_key(spec, n) for spec, ns in methods for n in ns}

    def missing(p: Problem, seed: int) -> bool:
        return any(not store.done(k, p.id, seed) for k in keys.values())

    ordered = sorted(problems, key=ctx.bucket)  # stable: file order within a length bucket
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    total = len(seeds) * len(problems)
    remaining = sum(missing(p, seed) for p in problems for seed in seeds)
    written, grades = 0, {}
    with tqdm(total=total, initial=total - remaining, disable=not progress, unit="problem", desc="eval") as bar:
        for seed in seeds:
            for batch in batches:
                todo = sum(missing(p, seed) for p in batch)
                if not todo:
                    continue
                ctx.clear_memo()
                before = _compilations(methods)
                results = [(spec, ns, spec.run(ctx, batch, seed, ns)) for spec, ns in methods
                           if any(not store.done(keys[spec.name, n], p.id, seed) for p in batch for n in ns)]
                compiled = before < 0 or _compilations(methods) != before
                for spec, ns, outcomes in results:
                    for problem, per_n in zip(batch, outcomes, strict=True):
                        for n in ns:
                            if not store.done(keys[spec.name, n], problem.id, seed):
                                store.append(
                                    make_record(ctx, spec, n, problem, seed, per_n[n], compiled, keep_texts, grades)
                                )
                                written += 1
                bar.update(todo)
    return written


def run_eval(
    benchmark: str,
    methods: str,
    policy,
    reward=None,
    out: str = "runs/eval",
    seeds: Sequence[int] = (0,),
    ns: Sequence[int] = (8,),
    limit: int | None = None,
    settings: DecodeSettings = DecodeSettings(),
    dtype: str | None = None,
    batch_size: int = 8,
    max_rows: int = 64,
    options: dict | None = None,
    progress: bool = True,
    keep_texts: bool = False,
) -> int:
    """Everything ``nabla-jax eval`` does. ``policy``/``reward`` are paths (loaded here, after the directory
    check) or already loaded models. Returns the number of records written."""
    from nabla_jax.loading import load_policy, load_reward

    settings.sampling  # bad sampling settings fail before anything loads
    if batch_size < 1 or max_rows < 1:
        raise ValueError("batch_size and max_rows must be >= 1")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {list(seeds)}")
    options = dict(options or {})
    bench = load_benchmark(benchmark, limit)
    chosen = parse_methods(methods, ns)
    needs_reward = any(spec.needs_reward for spec, _ in chosen)
    if needs_reward and reward is None:
        names = ", ".join(spec.name for spec, _ in chosen if spec.needs_reward)
        raise ValueError(f"method(s) {names} need a reward model: pass --reward")
    source = lambda m: m if isinstance(m, str) or m is None else m.source  # noqa: E731
    print_ = fingerprint(bench, settings, chosen, source(policy), source(reward) if needs_reward else None, dtype,
                         options)
    with RecordStore.open(out, print_) as store:
        policy = load_policy(policy, dtype) if isinstance(policy, str) else policy
        if needs_reward:
            reward = load_reward(reward, dtype) if isinstance(reward, str) else reward
        ctx = EvalContext(policy, reward if needs_reward else None, bench, settings, max_rows, options)
        return evaluate(ctx, store, chosen, list(seeds), batch_size, progress, keep_texts)
