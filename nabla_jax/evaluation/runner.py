"""The evaluation loop: for each seed, batches of unfinished problems through every method, one record per
(method key, problem, seed) appended as soon as its batch finishes.

Batches are fixed: problems ordered by prompt-length bucket and cut from the whole list, never from what is left,
and every method runs on a batch before the next one starts. A batch with any record missing is redone whole,
writing only the missing records, so a resumed or multi-process run (process i of N takes the batches b with
b % N == i) writes exactly the records of an uninterrupted single-process run. Why, and how wall time is shared:
docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Sequence

from nabla_jax.compile_count import compilations
from nabla_jax.distributed import Processes
from nabla_jax.evaluation.context import DecodeSettings, EvalContext
from nabla_jax.evaluation.datasets import Benchmark, Problem, load_benchmark
from nabla_jax.evaluation.identity import model_identity
from nabla_jax.evaluation.methods import MethodSpec, Outcome, method_key
from nabla_jax.evaluation.registry import METHODS
from nabla_jax.evaluation.records import RecordStore, check_directory
from nabla_jax.evaluation.shards import merge_shards, open_shard
from nabla_jax.seeds import check_seed

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


def fingerprint(
    benchmark: Benchmark,
    settings: DecodeSettings,
    methods: Sequence[tuple[MethodSpec, tuple[int, ...]]],
    policy: str,
    reward: str | None,
    dtype: str | None,
    options: dict,
    reward_options: dict | None = None,
    keep_texts: bool = False,
) -> dict:
    """What determines a record's content (see :mod:`nabla_jax.evaluation.records`); ``keep_texts`` is recorded
    when on, so records with and without every candidate's text never share a directory."""
    try:
        version = importlib.metadata.version("nabla-jax")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    shared = {
        "benchmark": {"name": benchmark.name, "sha256": benchmark.sha256, "grader": benchmark.grader.name,
                      **({"problems": benchmark.selection} if benchmark.selection else {})},
        "policy": model_identity(policy, dtype),
        "decode": dataclasses.asdict(settings),
        "code_version": version,
        "keys": KEY_RULE,
        **({"keep_texts": True} if keep_texts else {}),
    }
    per_method = {}
    for spec, ns in methods:
        for n in ns:
            entry = {"method": spec.name, "n": n if spec.uses_n else None, **spec.settings(options)}
            if spec.needs_reward:
                entry["reward"] = model_identity(reward, dtype)
                if reward_options:
                    entry["reward"]["kind_options"] = reward_options
            per_method[method_key(spec, n)] = entry
    return {"shared": shared, "methods": per_method}


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
        "error": outcome.error,
    }


def make_batches(ctx: EvalContext, batch_size: int) -> list[list[Problem]]:
    """The fixed batches: problems ordered by prompt-length bucket (stable: file order within a bucket), cut into
    ``batch_size``. Checks every prompt's length first."""
    problems = list(ctx.benchmark.problems)
    for p in problems:
        ctx.prompt_ids(p)  # every length error before any work
    ordered = sorted(problems, key=ctx.bucket)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def record_order(batches: Sequence[Sequence[Problem]], methods, seeds: Sequence[int]):
    """Sort key putting records in the order :func:`evaluate` writes them in one process: seed, batch, method,
    problem within the batch, budget. Records of other seeds or problems go last."""
    seed_pos = {seed: i for i, seed in enumerate(seeds)}
    where = {p.id: (b, i) for b, batch in enumerate(batches) for i, p in enumerate(batch)}
    method_pos = {method_key(spec, n): (s, j) for s, (spec, ns) in enumerate(methods) for j, n in enumerate(ns)}

    def key(record: dict) -> tuple:
        seed, pid, method = record["seed"], record["problem_id"], record["method"]
        if seed in seed_pos and pid in where and method in method_pos:
            (b, i), (s, j) = where[pid], method_pos[method]
            return (0, seed_pos[seed], b, s, i, j)
        return (1, seed, record.get("problem_index", -1), pid, method)

    return key


def evaluate(
    ctx: EvalContext,
    store: RecordStore,
    methods: Sequence[tuple[MethodSpec, tuple[int, ...]]],
    seeds: Sequence[int],
    batch_size: int = 8,
    progress: bool = True,
    keep_texts: bool = False,
    share: tuple[int, int] = (0, 1),
) -> int:
    """Produce every missing record of this process's share (``(index, count)``: the batches ``b`` with
    ``b % count == index``); returns how many were written."""
    from tqdm import tqdm

    index, count = share
    keys = {(spec.name, n): method_key(spec, n) for spec, ns in methods for n in ns}

    def missing(p: Problem, seed: int) -> bool:
        return any(not store.done(k, p.id, seed) for k in keys.values())

    batches = [b for i, b in enumerate(make_batches(ctx, batch_size)) if i % count == index]
    mine = [p for batch in batches for p in batch]
    total = len(seeds) * len(mine)
    remaining = sum(missing(p, seed) for p in mine for seed in seeds)
    written, grades = 0, {}
    with tqdm(total=total, initial=total - remaining, disable=not progress, unit="problem", desc="eval") as bar:
        for seed in seeds:
            for batch in batches:
                todo = sum(missing(p, seed) for p in batch)
                if not todo:
                    continue
                ctx.clear_memo()
                if not written:  # a first run stalls here while its programs compile
                    bar.set_postfix_str("compiling on a first run (kept in the compile cache for the next)")
                before = compilations()
                results = [(spec, ns, spec.run(ctx, batch, seed, ns)) for spec, ns in methods
                           if any(not store.done(keys[spec.name, n], p.id, seed) for p in batch for n in ns)]
                compiled = compilations() != before
                for spec, ns, outcomes in results:
                    for problem, per_n in zip(batch, outcomes, strict=True):
                        for n in ns:
                            if not store.done(keys[spec.name, n], problem.id, seed):
                                store.append(
                                    make_record(ctx, spec, n, problem, seed, per_n[n], compiled, keep_texts, grades)
                                )
                                written += 1
                bar.set_postfix_str("")
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
    problems: str | None = None,
    dtype: str | None = None,
    batch_size: int = 8,
    max_rows: int = 64,
    options: dict | None = None,
    progress: bool = True,
    keep_texts: bool = False,
    processes: Processes = Processes(),
    mesh=None,
    reward_options: dict | None = None,
    allow_nonfinite: bool = False,
) -> int:
    """Everything ``nabla-jax eval`` does. ``policy``/``reward`` are paths (loaded here, after the directory
    check) or already loaded models. With several ``processes`` each evaluates its share of the batches into its
    own shard and process 0 merges them (see :mod:`nabla_jax.evaluation.shards`). Returns the number of records
    written to ``records.jsonl`` (by a process other than 0: to its shard). ``reward_options`` are the keyword
    arguments of :func:`nabla_jax.rewards.load_reward` (a PRM's aggregate and separator, a likelihood clip).
    ``limit`` keeps the benchmark's first problems, ``problems`` (``"A:B"``) a range of them: a range that does not
    start at the first problem is part of the fingerprint, so another range goes to another directory."""
    from nabla_jax.loading import load_policy
    from nabla_jax.rewards import load_reward

    settings.sampling  # bad sampling settings fail before anything loads
    if batch_size < 1 or max_rows < 1:
        raise ValueError("batch_size and max_rows must be >= 1")
    seeds = [check_seed(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {seeds}")
    options = dict(options or {})
    bench = load_benchmark(benchmark, limit, problems=problems)
    chosen = parse_methods(methods, ns)
    needs_reward = any(spec.needs_reward for spec, _ in chosen)
    if needs_reward and reward is None:
        names = ", ".join(spec.name for spec, _ in chosen if spec.needs_reward)
        raise ValueError(f"method(s) {names} need a reward model: pass --reward")
    source = lambda m: m if isinstance(m, str) or m is None else m.source  # noqa: E731
    reward_options = dict(reward_options or {})
    run_fingerprint = fingerprint(bench, settings, chosen, source(policy), source(reward) if needs_reward else None,
                                  dtype, options, reward_options, keep_texts)
    seeds = list(seeds)

    def context() -> EvalContext:
        checked = {"mesh": mesh, "allow_nonfinite": allow_nonfinite}
        loaded = load_policy(policy, dtype, **checked) if isinstance(policy, str) else policy
        scorer = None
        if needs_reward:
            scorer = reward
            if isinstance(reward, str):
                scorer = load_reward(reward, loaded, dtype=dtype, **checked, **reward_options)
        return EvalContext(loaded, scorer, bench, settings, max_rows, options)

    def run(ctx: EvalContext, store: RecordStore, share: tuple[int, int] = (0, 1)) -> int:
        return evaluate(ctx, store, chosen, seeds, batch_size, progress and share[0] == 0, keep_texts, share)

    def order(ctx: EvalContext):
        return record_order(make_batches(ctx, batch_size), chosen, seeds)

    if processes.count > 1:
        return run_processes(out, run_fingerprint, processes, context, run, order)
    check_directory(out, run_fingerprint)  # a directory of another configuration is refused before the models load
    ctx = context()
    make_batches(ctx, batch_size)  # every prompt-length error before the directory is created
    with RecordStore.open(out, run_fingerprint) as store:
        merge_shards(store, order(ctx))  # the shards a killed multi-process run left, if any
        return run(ctx, store)


def run_processes(out: str, run_fingerprint: dict, processes: Processes, context, run, order) -> int:
    """The multi-process part of :func:`run_eval`: process 0 opens the directory, every process evaluates its
    share into its shard, process 0 merges the shards once all are written."""
    check_directory(out, run_fingerprint)  # every process fails alike on a bad directory, before any waits for another
    main = RecordStore.open(out, run_fingerprint) if processes.is_main else None
    try:
        processes.barrier("nabla-jax eval: directory open")
        ctx = context()
        with open_shard(out, run_fingerprint, processes.index) as shard:
            written = run(ctx, shard, (processes.index, processes.count))
        processes.barrier("nabla-jax eval: shards written")
        return written if main is None else merge_shards(main, order(ctx))
    finally:
        if main is not None:
            main.close()
