"""Rows of a theory check and the table the experiments print.

Each row is one measured quantity with what theory expects, the tolerance it is held to, the noise floor it was
measured against (``nan`` when the quantity is deterministic) and whether it passed (``None`` for rows that only
document, such as TC4's negative control).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence


class CheckRow(NamedTuple):
    check: str
    quantity: str
    measured: float
    expected: float
    tolerance: float
    noise_floor: float
    passed: bool | None
    rule: str  # how measured, expected and tolerance combine, e.g. "|m-e| <= tol"


def within(check, quantity, measured, expected, tolerance, noise_floor=math.nan) -> CheckRow:
    measured, expected, tolerance = float(measured), float(expected), float(tolerance)
    return CheckRow(check, quantity, measured, expected, tolerance, float(noise_floor),
                    abs(measured - expected) <= tolerance, "|m-e| <= tol")


def at_most(check, quantity, measured, tolerance, noise_floor=math.nan, expected=0.0) -> CheckRow:
    measured, tolerance = float(measured), float(tolerance)
    return CheckRow(check, quantity, measured, float(expected), tolerance, float(noise_floor),
                    measured <= tolerance, "m <= tol")


def at_least(check, quantity, measured, threshold, noise_floor=math.nan, expected=math.nan) -> CheckRow:
    measured, threshold = float(measured), float(threshold)
    return CheckRow(check, quantity, measured, float(expected), threshold, float(noise_floor),
                    measured >= threshold, "m >= tol")


def documented(check, quantity, measured, expected=math.nan, noise_floor=math.nan) -> CheckRow:
    return CheckRow(check, quantity, float(measured), float(expected), math.nan, float(noise_floor), None, "report")


def failures(rows: Sequence[CheckRow]) -> list[CheckRow]:
    return [row for row in rows if row.passed is False]


def all_passed(rows: Sequence[CheckRow]) -> bool:
    return not failures(rows)


def format_table(rows: Sequence[CheckRow]) -> str:
    def number(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.4g}"

    header = ("check", "quantity", "measured", "expected", "tolerance", "noise floor", "rule", "pass")
    body = [
        (r.check, r.quantity, number(r.measured), number(r.expected), number(r.tolerance), number(r.noise_floor),
         r.rule, {True: "PASS", False: "FAIL", None: "info"}[r.passed])
        for r in rows
    ]
    widths = [max(len(line[k]) for line in [header, *body]) for k in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [header, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
