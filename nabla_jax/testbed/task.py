"""The testbed task: multi-step addition/subtraction written as a chain of steps, with exact answers.

A problem is ``what is 37+48-19+25?``; its solution is one line per step and a final answer line::

    37+48=85
    85-19=66
    66+25=91
    #### 91

Problems are a pure function of ``(split, index)``: every random choice is read from a SHA-256 digest, so the
sets are the same on every machine and Python version. Splits are disjoint by construction: a problem belongs to
the split its canonical expression hashes to (10% test, 5% validation, 85% train), and a generator for one split
rejects candidates that hash elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

SPLIT_BUCKETS = {"test": range(0, 10), "val": range(10, 15), "train": range(15, 100)}
MIN_OPERANDS, MAX_OPERANDS = 3, 4
MIN_OPERAND, MAX_OPERAND = 10, 99
MAX_VALUE = 99  # every running value stays in [0, 99]: each step is two-digit arithmetic
ANSWER_PREFIX = "#### "
ALPHABET = "0123456789+-*=#? \nabcdefghijklmnopqrstuvwxyz"  # the char tokenizer's characters
_ANSWER_RE = re.compile(r"####\s*(-?\d+)\s*$")


@dataclasses.dataclass(frozen=True)
class Problem:
    operands: tuple[int, ...]
    ops: tuple[str, ...]  # "+" or "-", one fewer than operands

    @property
    def expression(self) -> str:
        """The canonical string (what the split hash is taken of)."""
        parts = [str(self.operands[0])]
        for op, value in zip(self.ops, self.operands[1:]):
            parts += [op, str(value)]
        return "".join(parts)

    @property
    def partial_results(self) -> tuple[int, ...]:
        """The running value after each step."""
        value, out = self.operands[0], []
        for op, operand in zip(self.ops, self.operands[1:]):
            value = value + operand if op == "+" else value - operand
            out.append(value)
        return tuple(out)

    @property
    def answer(self) -> int:
        return self.partial_results[-1]


def split_of(expression: str) -> str:
    bucket = int.from_bytes(hashlib.sha256(f"split/{expression}".encode()).digest()[:8], "big") % 100
    return next(name for name, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def _candidate(split: str, index: int, attempt: int) -> Problem | None:
    """A problem read from the digest, or None when no operation keeps the running value in [0, MAX_VALUE]."""
    digest = hashlib.sha256(f"nabla-testbed/{split}/{index}/{attempt}".encode()).digest()
    count = MIN_OPERANDS + digest[0] % (MAX_OPERANDS - MIN_OPERANDS + 1)
    span = MAX_OPERAND - MIN_OPERAND + 1
    operands = [MIN_OPERAND + int.from_bytes(digest[1 + 2 * k : 3 + 2 * k], "big") % span for k in range(count)]
    ops, value = [], operands[0]
    for k, operand in enumerate(operands[1:]):
        can_add, can_subtract = value + operand <= MAX_VALUE, value - operand >= 0
        if not (can_add or can_subtract):
            return None
        op = "-" if can_subtract and (digest[16 + k] % 2 or not can_add) else "+"
        value = value + operand if op == "+" else value - operand
        ops.append(op)
    return Problem(tuple(operands), tuple(ops))


def problem(split: str, index: int) -> Problem:
    """The ``index``-th problem of ``split`` ("train", "val" or "test")."""
    if split not in SPLIT_BUCKETS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_BUCKETS)}")
    attempt = 0
    while True:
        candidate = _candidate(split, index, attempt)
        if candidate is not None and split_of(candidate.expression) == split:
            return candidate
        attempt += 1


def problems(split: str, count: int, start: int = 0) -> list[Problem]:
    """Problems ``start .. start + count - 1`` of ``split`` (a few may repeat: the space is finite)."""
    return [problem(split, i) for i in range(start, start + count)]


def distinct_problems(split: str, count: int) -> list[tuple[int, Problem]]:
    """The first ``count`` distinct problems of ``split`` with their indices (evaluation sets use these)."""
    seen, out, index = set(), [], 0
    while len(out) < count:
        p = problem(split, index)
        if p.expression not in seen:
            seen.add(p.expression)
            out.append((index, p))
        index += 1
    return out


def format_prompt(p: Problem) -> str:
    """The user message."""
    return f"what is {p.expression}?"


def format_solution(p: Problem) -> str:
    """The reference chain of thought, ending in ``#### <answer>`` (no end-of-turn token)."""
    lines, value = [], p.operands[0]
    for op, operand, result in zip(p.ops, p.operands[1:], p.partial_results):
        lines.append(f"{value}{op}{operand}={result}")
        value = result
    lines.append(f"{ANSWER_PREFIX}{p.answer}")
    return "\n".join(lines)


def extract_answer(text: str) -> int | None:
    """The integer on a final ``#### N`` line; None when the response has none (strict: no last-number guess)."""
    match = _ANSWER_RE.search(text.strip())
    return int(match.group(1)) if match else None


def is_correct(p: Problem, text: str) -> bool:
    return extract_answer(text) == p.answer


def parse_prompt(text: str) -> Problem | None:
    """The problem a prompt string was made from (None if it is not one)."""
    match = re.fullmatch(r"what is (\d+(?:[+-]\d+)+)\?", text.strip())
    if not match:
        return None
    tokens = re.findall(r"\d+|[+-]", match.group(1))
    return Problem(tuple(int(t) for t in tokens[0::2]), tuple(tokens[1::2]))


def to_record(p: Problem, split: str, index: int) -> dict:
    """The benchmark schema of /work/shared/data: id, problem, answer (strings)."""
    return {"id": f"testbed-{split}-{index:04d}", "problem": format_prompt(p), "answer": str(p.answer)}


def write_jsonl(path: str, split: str = "test", count: int = 500) -> None:
    """The first ``count`` distinct problems of ``split``; ids keep the generator index."""
    with open(path, "w", encoding="utf-8") as handle:
        for i, p in distinct_problems(split, count):
            handle.write(json.dumps(to_record(p, split, i)) + "\n")


def read_jsonl(path: str) -> list[Problem]:
    """The problems of a jsonl file written by :func:`write_jsonl`."""
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    out = [parse_prompt(row["problem"]) for row in rows]
    if any(p is None or str(p.answer) != row["answer"] for p, row in zip(out, rows)):
        raise ValueError(f"{path}: a row is not a testbed problem with its answer")
    return out
