"""``nabla-jax sweep SPEC.toml``: a grid of evaluation cells, each a resumable eval directory, and one report.

A TOML spec names ``out``, the benchmark, policy, reward, seeds, budgets and batch size; optional ``[decode]``,
``[reward_options]`` and ``[nabla]`` tables every cell shares; and a ``[grid]`` whose lists' product is the set of
cells (keys ``method``, ``benchmark``, ``reward``, ``seeds``, ``n``, ``decode.FIELD``, ``nabla.FIELD``,
``reward_options.FIELD``). Every cell is checked as ``nabla-jax eval`` checks its flags before any directory is
made. A cell is an ordinary ``nabla-jax eval`` directory: a killed sweep rerun with the same spec finishes only what
is missing, and a changed cell is refused, naming the field. An example spec: docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import tomllib

from nabla_jax.evaluation.context import DecodeSettings
from nabla_jax.evaluation.options import OPTIONS, check_option
from nabla_jax.reasoner.config import NablaConfig, setting_names

TOP_LEVEL = {"out", "benchmark", "policy", "reward", "seeds", "limit", "problems", "n", "batch_size", "decode",
             "reward_options", "nabla", "grid", "paired", "dtype", "max_rows"}
GRID_ROOTS = {"method", "benchmark", "reward", "seeds", "n"}
GRID_TABLES = {"decode", "nabla", "reward_options"}


@dataclasses.dataclass(frozen=True)
class Cell:
    name: str
    directory: str
    settings: dict  # the spec with this cell's grid values applied


def read_spec(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            spec = tomllib.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"sweep spec not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    unknown = set(spec) - TOP_LEVEL
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(TOP_LEVEL))}")
    for key in ("out", "benchmark", "policy"):
        if key not in spec:
            raise ValueError(f"{path}: missing {key!r}")
    for key, values in spec.get("grid", {}).items():
        root = key.split(".", 1)[0]
        if not (key in GRID_ROOTS or (root in GRID_TABLES and "." in key)):
            raise ValueError(f"{path}: grid key {key!r} is not one of {sorted(GRID_ROOTS)} or TABLE.FIELD "
                             f"with TABLE in {sorted(GRID_TABLES)}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: grid key {key!r} needs a non-empty list of values")
    return spec


def _cell_name(assignment: dict) -> str:
    """``key=value,...`` with characters a directory name should not hold replaced; where that loses information a
    short hash of the exact text is added, so two cells never share a directory."""
    if not assignment:
        return "cell"
    text = ",".join(f"{key}={value}" for key, value in assignment.items())
    name = re.sub(r"[^A-Za-z0-9@=.,_-]+", "_", text)
    return name if name == text else f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _fields(where: str, given: dict, known) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"{where} unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")


def _integer(where: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {value!r}")


def _finite(where: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")


def check_cell(path: str, cell: Cell) -> None:
    """Every check ``nabla-jax eval`` makes on the same values, on one cell's settings, without running anything or
    writing a file; errors read ``SPEC: [table] ...`` or ``SPEC: key ...`` (with the cell's name)."""
    from nabla_jax.evaluation.datasets import load_benchmark
    from nabla_jax.evaluation.runner import parse_methods
    from nabla_jax.rewards.loaders import READING_DEFAULTS
    from nabla_jax.seeds import check_seed

    s, at = cell.settings, f"{path} (cell {cell.name}):"
    for key in ("out", "benchmark", "policy", "method", "reward", "problems", "dtype"):
        if key in s and s[key] is not None and not isinstance(s[key], str):
            raise ValueError(f"{at} {key} must be a string, got {s[key]!r}")
    seeds = s.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise ValueError(f"{at} seeds must be a non-empty list of integers, got {seeds!r}")
    for seed in seeds:
        check_seed(seed, f"{at} seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{at} seeds must be distinct, got {seeds!r}")
    ns = s.get("n", [8])
    for n in ns if isinstance(ns, list) else [ns]:
        _integer(f"{at} n", n)
    for key in ("limit", "batch_size", "max_rows"):
        if key in s:
            _integer(f"{at} {key}", s[key])
    decode = {k: _none(v) for k, v in s.get("decode", {}).items()}
    _fields(f"{at} [decode]", decode, [f.name for f in dataclasses.fields(DecodeSettings)] + list(OPTIONS))
    for name in OPTIONS:
        if name in decode:
            check_option(name, decode.pop(name), f"{at} [decode] {name}")
    _integer(f"{at} [decode] max_new_tokens", decode.get("max_new_tokens", 1))
    for key in ("temperature", "top_p", "repetition_penalty"):
        if key in decode:
            _finite(f"{at} [decode] {key}", decode[key])
    try:
        DecodeSettings(**decode).sampling
    except ValueError as err:
        raise ValueError(f"{at} [decode] {err}") from None
    nabla = {k: _none(v) for k, v in s.get("nabla", {}).items()}
    _fields(f"{at} [nabla]", nabla, list(setting_names()))
    for key, value in nabla.items():
        if isinstance(value, float):
            _finite(f"{at} [nabla] {key}", value)
    try:
        NablaConfig.from_settings(**nabla)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{at} [nabla] {err}") from None
    options = {k: _none(v) for k, v in s.get("reward_options", {}).items()}
    _fields(f"{at} [reward_options]", options, READING_DEFAULTS)
    if options.get("clip") is not None:
        _finite(f"{at} [reward_options] clip", options["clip"])
    try:
        parse_methods(s.get("method", "greedy"), ns if isinstance(ns, list) else [ns])
        load_benchmark(s["benchmark"], s.get("limit"), problems=s.get("problems"))
    except ValueError as err:
        raise ValueError(f"{at} {err}") from None


def check_spec(path: str, spec: dict) -> list[Cell]:
    """The spec's cells, every one checked (:func:`check_cell`), grid values distinct and ``paired`` a list of
    [A, B] method pairs, before any directory is created."""
    for key, values in spec.get("grid", {}).items():
        seen = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(seen)) != len(seen):
            raise ValueError(f"{path}: grid key {key!r} lists a value twice: {values!r}")
    paired = spec.get("paired", [])
    if not isinstance(paired, list) or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(m, str) for m in p)
                                                for p in paired):
        raise ValueError(f"{path}: paired must be a list of [method A, method B] pairs, e.g. [[\"nabla@8\", "
                         f"\"nabla_no_dto@8\"]], got {paired!r}")
    todo = cells(spec)
    for cell in todo:
        check_cell(path, cell)
    return todo


def cells(spec: dict) -> list[Cell]:
    """Every cell of the grid, in the order the grid lists its values."""
    grid = spec.get("grid", {})
    out = []
    for values in itertools.product(*grid.values()):
        assignment = dict(zip(grid.keys(), values))
        settings = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items() if k != "grid"}
        for key, value in assignment.items():
            table, _, field = key.partition(".")
            if field:
                settings.setdefault(table, {})[field] = value
            else:
                settings[key] = value
        name = _cell_name(assignment)
        out.append(Cell(name, os.path.join(spec["out"], name), settings))
    return out


def _none(value):
    return None if isinstance(value, str) and value.lower() in ("none", "off") else value


def run_cell(cell: Cell, progress: bool = True) -> int:
    from nabla_jax.evaluation.runner import run_eval

    s = cell.settings
    ns = s.get("n", [8])
    decode = {k: _none(v) for k, v in s.get("decode", {}).items() if k not in OPTIONS}
    chosen = {k: v for k, v in s.get("decode", {}).items() if k in OPTIONS}
    return run_eval(
        s["benchmark"], s.get("method", "greedy"), s["policy"], s.get("reward"),
        out=cell.directory, seeds=s.get("seeds", [0]), ns=ns if isinstance(ns, list) else [ns], limit=s.get("limit"),
        problems=s.get("problems"),
        settings=DecodeSettings(**decode), dtype=s.get("dtype"), batch_size=s.get("batch_size", 8),
        max_rows=s.get("max_rows", 64), progress=progress,
        options={**chosen,
                 "nabla": NablaConfig.from_settings(**{k: _none(v) for k, v in s.get("nabla", {}).items()})},
        reward_options={k: _none(v) for k, v in s.get("reward_options", {}).items()},
    )


def run_sweep(path: str, progress: bool = True) -> tuple[str, dict]:
    """Run (or finish) every cell of the spec at ``path``, then write the report over all cells, with a plot of
    accuracy against each numeric grid key (``accuracy_vs_<key>.png``)."""
    from nabla_jax.evaluation.report import build_report

    spec = read_spec(path)
    todo = check_spec(path, spec)
    for i, cell in enumerate(todo):
        print(f"sweep: cell {i + 1}/{len(todo)}: {cell.name}", flush=True)
        run_cell(cell, progress)
    pairs = [tuple(p) for p in spec.get("paired", [])]
    out = os.path.join(spec["out"], "report")
    markdown, summary = build_report([c.directory for c in todo], out, pairs=pairs)
    for key, values in spec.get("grid", {}).items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            plot_grid_key(todo, summary, key, os.path.join(out, f"accuracy_vs_{key.replace('.', '_')}.png"))
    return markdown, summary


def plot_grid_key(todo: list[Cell], summary: dict, key: str, path: str) -> None:
    """Accuracy (mean over seeds, 95% bootstrap interval over problems) against one grid key: a line per method and
    value of the other grid keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, _, field = key.partition(".")
    series: dict[str, list] = {}
    for cell, run in zip(todo, summary["runs"]):
        x = cell.settings[table][field] if field else cell.settings[key]
        others = [part for part in cell.name.split(",") if "=" in part and not part.startswith((key + "=", "method="))]
        for row in run["methods"]:
            label = ", ".join([row["method"], *others])
            series.setdefault(label, []).append((x, row["accuracy"], row["ci95_problems"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in series.items():
        points.sort()
        xs = [p[0] for p in points]
        ys = [100 * p[1] for p in points]
        intervals = [p[2] or (p[1], p[1]) for p in points]  # no interval from a single problem
        err = [[100 * (p[1] - ci[0]) for p, ci in zip(points, intervals)],
               [100 * (ci[1] - p[1]) for p, ci in zip(points, intervals)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=method)
    if len({p[0] for s in series.values() for p in s}) > 2 and min(p[0] for s in series.values() for p in s) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel("accuracy % (95% bootstrap CI over problems)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
