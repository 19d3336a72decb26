"""Assertions shared by the theory tests: a check passes when none of its rows fails, and a mutation test
passes when the same rows, computed for a broken subject, do fail."""

from experiments.theory.report import all_passed, format_table


def assert_all_pass(rows):
    assert all_passed(rows), "\n" + format_table(rows)


def assert_detects(rows, marker: str):
    """``all_passed`` is False for the broken subject, and a row whose quantity contains ``marker`` failed."""
    selected = [row for row in rows if marker in row.quantity]
    assert selected, f"no row matches {marker!r}:\n" + format_table(rows)
    assert not all_passed(rows) and any(row.passed is False for row in selected), (
        "broken subject went undetected:\n" + format_table(rows))
