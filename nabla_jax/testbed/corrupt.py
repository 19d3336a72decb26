"""Corrupted reference solutions: hard negatives for the reward model, one wrong digit and a wrong answer.

Two kinds: ``step`` changes one digit of one step's result and carries the wrong value on through the later
steps (a consistent-looking slip, like the policy's own mistakes); ``answer`` keeps every step right and
changes one digit of the final ``####`` line (an inconsistency a verifier can spot locally).
"""

from __future__ import annotations

import numpy as np

from nabla_jax.testbed import task


def _perturb(value: int, rng: np.random.Generator) -> int:
    digits = list(str(value))
    place = int(rng.integers(len(digits)))
    choices = [d for d in "0123456789" if d != digits[place] and not (place == 0 and d == "0" and len(digits) > 1)]
    digits[place] = str(rng.choice(choices))
    return int("".join(digits))


def corrupt_solution(p: task.Problem, rng: np.random.Generator, kind: str = "step") -> str:
    """A solution to ``p`` whose final answer is wrong because of one changed digit (see the module doc)."""
    if kind not in ("step", "answer"):
        raise ValueError(f"kind must be 'step' or 'answer', got {kind!r}")
    wrong_step = int(rng.integers(len(p.ops))) if kind == "step" else -1
    lines, value = [], p.operands[0]
    for k, (op, operand) in enumerate(zip(p.ops, p.operands[1:])):
        result = value + operand if op == "+" else value - operand
        if k == wrong_step:
            result = _perturb(result, rng)
        lines.append(f"{value}{op}{operand}={result}")
        value = result
    final = _perturb(value, rng) if kind == "answer" else value
    lines.append(f"{task.ANSWER_PREFIX}{final}")
    return "\n".join(lines)
