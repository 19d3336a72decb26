"""Compilations in this process, counted one way for everyone (library, tests, benchmarks): JAX's public monitoring
events. The backend-compile event fires once per program handed to XLA (a miss of jit's in-memory cache), named by
the function it compiles, whether XLA compiles it or the persistent compilation cache
(:mod:`nabla_jax.compile_cache`) serves it; the cache-hit event tells the two apart."""

from __future__ import annotations

import collections

import jax

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_requests = 0
_requests_by_name: collections.Counter = collections.Counter()
_hits = 0
_seconds = 0.0
_hit_pending = False  # the cache-hit event fires inside the backend-compile event it belongs to, before it ends


def _listen_duration(event: str, seconds: float, fun_name: str = "", **_) -> None:
    global _requests, _seconds, _hit_pending
    if event == BACKEND_COMPILE_EVENT:
        _requests += 1
        _requests_by_name[fun_name.removeprefix("jit(").removesuffix(")")] += 1
        if not _hit_pending:
            _seconds += seconds
        _hit_pending = False


def _listen(event: str, **_) -> None:
    global _hits, _hit_pending
    if event == CACHE_HIT_EVENT:
        _hits += 1
        _hit_pending = True


jax.monitoring.register_event_duration_secs_listener(_listen_duration)
jax.monitoring.register_event_listener(_listen)


def compilations() -> int:
    """Programs XLA compiled so far in this process (from the first import of this module on)."""
    return _requests - _hits


def compile_requests(name: str | None = None) -> int:
    """Programs handed to XLA so far: the ones it compiled and the ones the persistent cache served (each a miss of
    jit's in-memory cache: a new shape or setting). ``name``: only the programs of the jitted function of that name
    (e.g. ``"decode_queue"``)."""
    return _requests if name is None else _requests_by_name[name]


def compile_seconds() -> float:
    """Seconds XLA spent compiling so far in this process (cache hits left out)."""
    return _seconds
