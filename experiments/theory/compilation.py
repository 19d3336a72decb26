"""``jit`` for the theory package, with a switch to XLA's unoptimised CPU pipeline.

The fast tests run every check at small sizes, where compiling dominates and XLA's optimisation passes cost more
than they save (about half the compile time, for code that then runs 1.5-3x slower); the experiments run at full
size, where optimised code pays. ``jit`` wraps a function twice and picks the variant when it is called, from a
context variable, so ``with quick_compilation():`` affects only this package's functions in the current thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import jax

QUICK_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
_quick = contextvars.ContextVar("experiments_theory_quick_compilation", default=False)


@contextlib.contextmanager
def quick_compilation(enabled: bool = True):
    token = _quick.set(enabled)
    try:
        yield
    finally:
        _quick.reset(token)


def jit(fun=None, *, loop_kernel: bool = False, **jit_kwargs):
    """``jax.jit(fun, **jit_kwargs)``, compiled with ``QUICK_COMPILER_OPTIONS`` inside ``quick_compilation()``.

    ``loop_kernel=True`` marks a function whose run time dominates even at test sizes (a sampler's loop): it is
    always optimised.
    """
    if fun is None:
        return functools.partial(jit, loop_kernel=loop_kernel, **jit_kwargs)
    optimised = jax.jit(fun, **jit_kwargs)
    if loop_kernel:
        return optimised
    quick = jax.jit(fun, compiler_options=QUICK_COMPILER_OPTIONS, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        # compiler options are only allowed on the outermost jit; inside a trace the call is inlined anyway
        tracing = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs)))
        return (quick if _quick.get() and not tracing else optimised)(*args, **kwargs)

    return call
