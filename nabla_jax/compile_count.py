"""Compilations in this process, counted one way for everyone: JAX's public monitoring event that fires once per
backend (XLA) compilation, whatever function or eager op caused it."""

from __future__ import annotations

import jax

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_count = 0


def _listen(event: str, seconds: float, **_) -> None:
    global _count
    if event == BACKEND_COMPILE_EVENT:
        _count += 1


jax.monitoring.register_event_duration_secs_listener(_listen)


def compilations() -> int:
    """Backend compilations so far in this process (from the first import of this module on)."""
    return _count
