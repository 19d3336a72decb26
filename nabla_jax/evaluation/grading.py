"""Answer extraction and grading.

Extraction follows the order of the official ∇-Reasoner evaluation: the last complete ``\\boxed{...}`` (or
``\\fbox{...}``), else the text after the last "the answer is", else the last number in the response. Math
answers are then compared with math-verify (LaTeX parsed to sympy, equivalence checked symbolically), after a
cheap normalised string match. GSM8K compares the final number of the extracted answer numerically.

A :class:`Grader` is two functions, ``extract(response) -> str | None`` and ``equivalent(pred, gold) -> bool``.
The same ``equivalent`` groups answers for majority votes, so "1/2" and "0.5" vote together. A benchmark with its
own exact rule registers its own grader with :func:`register_grader`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"the (?:final )?answer is[:\s]*", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Grader:
    name: str
    extract: Callable[[str], str | None]
    equivalent: Callable[[str | None, str], bool]

    def grade(self, response: str, gold: str) -> tuple[str | None, bool]:
        """``(extracted answer, correct)`` for one response."""
        answer = self.extract(response)
        return answer, self.equivalent(answer, gold)


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at ``text[start] == "{"`` and the index after it (None if unclosed)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``); None when there is none.

    A box cut off by the length limit (unbalanced braces) is skipped in favour of an earlier complete one."""
    found: list[tuple[int, str]] = []
    for command in _BOX_COMMANDS:
        for match in re.finditer(re.escape(command), text):
            i = match.end()
            if i < len(text) and text[i] == "{":
                group = _braced(text, i)
                if group is not None:
                    found.append((match.start(), group[0].strip()))
            elif i < len(text) and text[i] == " ":
                rest = text[i + 1 :].split("$")[0].split("\n")[0].strip()
                if rest:
                    found.append((match.start(), rest.split()[0].rstrip(".,")))
    return max(found)[1] if found else None


def answer_after_phrase(text: str) -> str | None:
    """What follows the last "the answer is" up to the end of its line, trimmed of ``$`` and a final period."""
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].split("\n")[0].strip()
    rest = rest.strip("$ ").rstrip(".").strip("$ ")
    return rest or None


def last_number(text: str) -> str | None:
    """The last number in ``text`` with thousands separators removed (``"1,234.5"`` -> ``"1234.5"``)."""
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    return numbers[-1].replace(",", "").rstrip(".") or None


def extract_answer(text: str) -> str | None:
    """Last boxed answer, else the text after "the answer is", else the last number; None when none is found."""
    for rule in (last_boxed, answer_after_phrase, last_number):
        answer = rule(text)
        if answer:
            return answer
    return None


def normalise(answer: str) -> str:
    """A light canonical form for exact matching (spacing, ``\\left``/``\\right``, ``\\dfrac``, ``$``, ``\\text``)."""
    s = answer.strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\!", ""),
                     ("\\,", ""), ("\\;", ""), ("$", ""), (" ", "")):
        s = s.replace(old, new)
    return s.rstrip(".")


@functools.lru_cache(maxsize=65536)
def _parsed(answer: str) -> tuple:
    from math_verify import parse

    return tuple(parse("\\boxed{" + answer + "}"))


def math_equivalent(pred: str | None, gold: str) -> bool:
    """Normalised string equality, else math-verify's symbolic equivalence of the two answers."""
    if pred is None or not pred.strip():
        return False
    if normalise(pred) == normalise(gold):
        return True
    from math_verify import verify

    gold_parsed, pred_parsed = _parsed(gold), _parsed(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(list(gold_parsed), list(pred_parsed)))


def final_number(text: str) -> str | None:
    """GSM8K extraction: the last number of the extracted answer (so ``\\boxed{18}`` and "... is $18." both give 18)."""
    answer = extract_answer(text)
    return last_number(answer) if answer is not None else None


def numbers_equal(pred: str | None, gold: str) -> bool:
    if pred is None:
        return False
    try:
        return abs(float(pred.replace(",", "")) - float(gold.replace(",", ""))) < 1e-6
    except ValueError:
        return False


GRADERS: dict[str, Grader] = {
    "math": Grader("math", extract_answer, math_equivalent),
    "gsm8k": Grader("gsm8k", final_number, numbers_equal),
}


def register_grader(grader: Grader) -> None:
    """Add a grader that benchmarks can name (e.g. an exact-match rule for a synthetic task)."""
    GRADERS[grader.name] = grader


def get_grader(name: str) -> Grader:
    if name not in GRADERS:
        raise ValueError(f"unknown grader {name!r}; known: {', '.join(sorted(GRADERS))}")
    return GRADERS[name]
