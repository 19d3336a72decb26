"""Corrupted reference solutions: hard negatives for the reward model, shaped like the policy's own mistakes.

The shipped policy's wrong answers are nearly all a step result off by a little (``56-16=41``, mostly the units
digit), carried on consistently through the later steps, and now and then a previous result copied wrongly into
the next line (``68-60=8`` then ``9+54=63``). The kinds:

- ``slip``: one step's result off by a small offset (±1, ±2, ±3 or ±10), the later steps computed from it;
- ``digit``: one digit of one step's result replaced by another, carried on the same way;
- ``copy``: every result right, but one carried-over value copied wrongly (off by ±1 or ±2) into the next line;
- ``answer``: every step right, the final ``####`` line off by one changed digit.

Every kind is redrawn until all its values stay in [0, MAX_VALUE] and its final answer is wrong.
"""

from __future__ import annotations

import numpy as np

from nabla_jax.testbed import task

KINDS = ("slip", "digit", "copy", "answer")
SLIP_OFFSETS = (-3, -2, -1, 1, 2, 3, -10, 10)
SLIP_WEIGHTS = (1, 3, 6, 6, 3, 1, 1, 1)


def _change_digit(value: int, rng: np.random.Generator) -> int:
    digits = list(str(value))
    place = int(rng.integers(len(digits)))
    choices = [d for d in "0123456789" if d != digits[place] and not (place == 0 and d == "0" and len(digits) > 1)]
    digits[place] = str(rng.choice(choices))
    return int("".join(digits))


def _slip(value: int, rng: np.random.Generator) -> int:
    weights = np.asarray(SLIP_WEIGHTS, float)
    return value + int(rng.choice(SLIP_OFFSETS, p=weights / weights.sum()))


def corrupt_solution(p: task.Problem, rng: np.random.Generator, kind: str = "slip") -> str:
    """A solution to ``p`` with one mistake of ``kind`` (see the module doc) and a wrong final answer."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "copy" and len(p.ops) < 2:
        kind = "slip"  # a one-step problem carries nothing over
    for _ in range(100):
        text, values = _corrupt_once(p, rng, kind)
        if all(0 <= v <= task.MAX_VALUE for v in values) and not task.is_correct(p, text):
            return text
    raise RuntimeError(f"no {kind} corruption of {p.expression} stays in range")  # pragma: no cover


def _corrupt_once(p: task.Problem, rng: np.random.Generator, kind: str) -> tuple[str, list[int]]:
    steps = len(p.ops)
    wrong_step = int(rng.integers(steps)) if kind in ("slip", "digit") else -1
    wrong_copy = 1 + int(rng.integers(steps - 1)) if kind == "copy" else -1
    lines, values, value = [], [], p.operands[0]
    for k, (op, operand) in enumerate(zip(p.ops, p.operands[1:])):
        if k == wrong_copy:
            value = _slip(value, rng) if rng.random() < 0.8 else _change_digit(value, rng)
            values.append(value)
        result = value + operand if op == "+" else value - operand
        if k == wrong_step:
            result = _slip(result, rng) if kind == "slip" else _change_digit(result, rng)
        lines.append(f"{value}{op}{operand}={result}")
        values.append(result)
        value = result
    final = _change_digit(value, rng) if kind == "answer" else value
    lines.append(f"{task.ANSWER_PREFIX}{final}")
    return "\n".join(lines), values
