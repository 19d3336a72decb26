"""The methods' own settings (beyond the shared decoding settings and the ∇-Reasoner's), each with its default
written once here: ``nabla-jax eval`` makes a flag of each, sweep specs take them in ``[decode]``, and a method
puts those it reads into the run's fingerprint."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class MethodOption:
    name: str
    default: float | int
    integer: bool  # an integer >= 1; else a finite number
    positive: bool  # numbers: > 0 (else >= 0)
    help: str


OPTIONS = {o.name: o for o in (
    MethodOption("wbon_temperature", 1.0, False, True, "weighted best-of-N weights softmax(reward / T)"),
    MethodOption("beam_width", 4, True, True, "beam@N and dvts@N: expansions per kept beam, the subtree width (M)"),
    MethodOption("pf_temperature", 1.0, False, True, "pf@N: particle weights softmax(step score / T)"),
    MethodOption("rgd_weight", 1.0, False, False, "rgd@k: candidate tokens ranked by logit + w * reward"),
    MethodOption("mix_beta", 1.0, False, False, "mix@N: proposals from softmax((log pi + beta * log p_verifier) / T)"),
)}


def check_option(name: str, value, label: str | None = None) -> float | int:
    """``value`` checked for the option ``name``; an error names it as ``label`` (default: the name)."""
    option = OPTIONS[name]
    label = name if label is None else label
    if option.integer:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{label} must be a finite number, got {value!r}")
    if option.positive and value <= 0:
        raise ValueError(f"{label} must be > 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{label} must be >= 0, got {value!r}")
    return float(value)


def option(options: dict, name: str):
    """The method option ``name`` from a run's ``options`` (its default when not given)."""
    return check_option(name, options.get(name, OPTIONS[name].default))
