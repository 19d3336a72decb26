"""Benchmarks: the packaged JSONL files (see ``nabla_jax/data/benchmarks/README.md`` for sources and licenses) or a
user's JSONL file with the same schema: one JSON object per line with string fields ``id``, ``problem``, ``answer``
(an integer answer is accepted and kept as its decimal string); other fields are kept in ``extra``.

``BENCHMARKS`` maps a name to its file and grader; :func:`register_benchmark` adds one. ``--benchmark`` takes a
registered name or a path ending in ``.jsonl`` (graded with the math grader unless ``grader`` says otherwise).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from nabla_jax.evaluation.grading import Grader, get_grader

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "benchmarks")


@dataclasses.dataclass(frozen=True)
class BenchmarkEntry:
    path: str
    grader: str = "math"


BENCHMARKS: dict[str, BenchmarkEntry] = {
    "math500": BenchmarkEntry(os.path.join(DATA_DIR, "math500.jsonl")),
    "aime2024": BenchmarkEntry(os.path.join(DATA_DIR, "aime2024.jsonl")),
    "aime2025": BenchmarkEntry(os.path.join(DATA_DIR, "aime2025.jsonl")),
    "amc": BenchmarkEntry(os.path.join(DATA_DIR, "amc.jsonl")),
    "gsm8k": BenchmarkEntry(os.path.join(DATA_DIR, "gsm8k.jsonl"), grader="gsm8k"),
    # "testbed", the bundled synthetic task, is registered by the package root (nabla_jax.testbed.grading.register)
}


def register_benchmark(name: str, path: str, grader: str = "math") -> None:
    BENCHMARKS[name] = BenchmarkEntry(path, grader)


class DatasetError(ValueError):
    """A benchmark file line that is not a valid problem; the message starts with ``FILE:LINE:``."""


@dataclasses.dataclass(frozen=True)
class Problem:
    index: int  # position in the file (0-based); sampling keys derive from it, so --limit does not change them
    id: str
    problem: str
    answer: str
    extra: dict = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    path: str
    sha256: str
    grader: Grader
    problems: tuple[Problem, ...]
    selection: str | None = None  # "A:B" when a range not starting at the first problem was chosen


def _field(obj: dict, key: str, where: str) -> str:
    if key not in obj:
        raise DatasetError(f"{where}: missing required field {key!r}")
    value = obj[key]
    if isinstance(value, int) and not isinstance(value, bool) and key == "answer":
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list) -> dict:
    """A JSON object's pairs as a dict, refusing a repeated key (plain ``json`` keeps the last one silently)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_problems(path: str) -> tuple[list[Problem], str]:
    """Problems of a JSONL file and the file's sha256. Blank lines are skipped; any other bad line raises
    :class:`DatasetError` naming ``path:line``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"benchmark file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DatasetError(f"{where}: not UTF-8 ({err})") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
        except _DuplicateKey as err:
            raise DatasetError(f"{where}: key {err.args[0]!r} appears twice in one object") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        pid, text, answer = (_field(obj, key, where) for key in ("id", "problem", "answer"))
        if pid in seen:
            raise DatasetError(f"{where}: duplicate id {pid!r} (first on line {seen[pid]})")
        seen[pid] = number
        extra = {k: v for k, v in obj.items() if k not in ("id", "problem", "answer")}
        problems.append(Problem(len(problems), pid, text, answer, extra))
    if not problems:
        raise DatasetError(f"{path}: no problems in the file")
    return problems, hashlib.sha256(data).hexdigest()


def parse_problem_range(text: str, flag: str = "--problems") -> tuple[int, int | None]:
    """``"N"`` (the first N problems), ``"A:B"`` (problems A to B - 1) or ``"A:"`` (A to the end) as ``(A, B)``."""
    start, colon, stop = str(text).strip().partition(":")
    try:
        first = int(start) if colon else 0
        end = (int(stop) if stop.strip() else None) if colon else int(start)
    except ValueError:
        raise ValueError(f"{flag} expects N, A:B or A: (0-based problem positions), got {text!r}") from None
    if first < 0 or (end is not None and end <= first):
        raise ValueError(f"{flag} {text!r} is empty or negative: expected 0 <= A < B")
    return first, end


def select_problems(problems: list, text: str, flag: str = "--problems") -> tuple[list, str | None]:
    """``(the problems in the range, its "A:B" for a fingerprint when it does not start at the first problem)``."""
    first, end = parse_problem_range(text, flag)
    if first >= len(problems):
        raise ValueError(f"{flag} {text!r} starts past the benchmark's {len(problems)} problems")
    end = len(problems) if end is None else min(end, len(problems))
    return problems[first:end], (f"{first}:{end}" if first else None)


def load_benchmark(name_or_path: str, limit: int | None = None, grader: str | None = None,
                   problems: str | None = None) -> Benchmark:
    """A registered benchmark or a ``.jsonl`` path; ``limit`` keeps the first problems of the file, ``problems``
    (``"A:B"``, :func:`parse_problem_range`) a range of them. A problem keeps its position in the file, and so its
    sampling keys, whichever range holds it."""
    if name_or_path in BENCHMARKS:
        entry, name = BENCHMARKS[name_or_path], name_or_path
    elif name_or_path.endswith(".jsonl") or os.path.isfile(name_or_path):
        entry = BenchmarkEntry(name_or_path)
        name = os.path.splitext(os.path.basename(name_or_path))[0]
    else:
        raise ValueError(f"unknown benchmark {name_or_path!r}: use one of {', '.join(BENCHMARKS)} or a .jsonl path")
    chosen, digest = read_problems(entry.path)
    selection = None
    if limit is not None and problems is not None:
        raise ValueError("give --limit or --problems, not both")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1, got {limit}")
        chosen = chosen[:limit]
    if problems is not None:
        chosen, selection = select_problems(chosen, problems)
    return Benchmark(name, os.path.abspath(entry.path), digest, get_grader(grader or entry.grader), tuple(chosen),
                     selection)


def user_message(problem: Problem, instruction: str | None = None) -> str:
    """The single user message: the problem, then the optional instruction after a blank line."""
    return problem.problem if not instruction else f"{problem.problem}\n\n{instruction}"
