"""JAX's persistent compilation cache in the user's cache directory, so a second run starts warm.

The command line turns it on for every command (``--no-compile-cache`` or ``NABLA_JAX_NO_COMPILE_CACHE=1`` turn it
off); Python users call :func:`enable`. It lives in ``$NABLA_JAX_CACHE_DIR/xla`` (default
``~/.cache/nabla-jax/xla``) beside the checkpoint-hash cache. Every compiled program is kept, however quick its
compile, so a run whose programs are all cached compiles nothing. Entries are keyed by the program, the compile
options, the jax version and the device, and written whole under a temporary name, so concurrent processes can
share one cache. Its ``exports`` folder keeps the largest programs whole (:mod:`nabla_jax.program_cache`), so a
second run does not even trace them. ``nabla-jax cache info`` shows its size, ``nabla-jax cache clear`` removes it.
"""

from __future__ import annotations

import os
import shutil

DISABLE_ENV = "NABLA_JAX_NO_COMPILE_CACHE"


def cache_root() -> str:
    """``$NABLA_JAX_CACHE_DIR``, else ``~/.cache/nabla-jax``: the user's cache directory (the checkpoint-hash cache of
    :mod:`nabla_jax.evaluation.identity` lives there too)."""
    return os.environ.get("NABLA_JAX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nabla-jax")


def compile_cache_dir() -> str:
    return os.path.join(cache_root(), "xla")


def disabled_by_environment() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def enable(directory: str | None = None) -> str | None:
    """Point JAX's persistent compilation cache at ``directory`` (default :func:`compile_cache_dir`) and keep every
    program in it; returns the directory, or None when the environment turns the cache off. A cache directory
    already given to JAX (``JAX_COMPILATION_CACHE_DIR``, ``jax.config``) is kept as it is."""
    if disabled_by_environment():
        return None
    import jax

    import nabla_jax.program_cache as program_cache

    if directory is None and jax.config.jax_compilation_cache_dir:
        directory = jax.config.jax_compilation_cache_dir
    else:
        directory = directory or compile_cache_dir()
        os.makedirs(directory, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    program_cache.enable(os.path.join(directory, program_cache.FOLDER))
    return directory


def size_bytes(directory: str | None = None) -> tuple[int, int]:
    """``(files, bytes)`` held by the cache directory."""
    files = total = 0
    for root, _, names in os.walk(directory or compile_cache_dir()):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
                files += 1
            except OSError:
                pass  # removed by another process meanwhile
    return files, total


def clear(directory: str | None = None) -> tuple[int, int]:
    """Remove the cache directory; returns what it held."""
    directory = directory or compile_cache_dir()
    held = size_bytes(directory)
    shutil.rmtree(directory, ignore_errors=True)
    return held
