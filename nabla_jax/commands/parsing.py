"""Argument values the commands share: integer lists, seeds and finite numbers, each error naming its flag."""

from __future__ import annotations

import argparse
import math

from nabla_jax.seeds import check_seed


def int_list(text: str, flag: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} expects comma-separated integers, got {text!r}")
    return values


def seed_list(text: str, flag: str = "--seeds") -> list[int]:
    """Distinct seeds in [0, 2**64), checked before anything is loaded or written."""
    seeds = [check_seed(s, f"{flag} value") for s in int_list(text, flag)]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{flag} must be distinct, got {text!r}")
    return seeds


def seed_value(text: str) -> int:
    """An argparse ``type`` for one seed."""
    try:
        return check_seed(int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err) if "range" in str(err) else f"not an integer: {text!r}") from None


def finite_float(text: str) -> float:
    """An argparse ``type`` for every float setting: a finite number (inf and nan are refused here, once, for every
    command; each setting's range is checked where the setting is used)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def add_allow_nonfinite(parser) -> None:
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="load checkpoints even when their weights hold NaN or inf (refused by default)")
