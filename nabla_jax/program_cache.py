"""Whole programs kept serialised (``jax.export``) beside the persistent compilation cache, so a later process skips
tracing them: a cache hit still traces and lowers a program to find its key, seconds for the ∇-Reasoner's loop.

:func:`call` (the ∇-Reasoner's loop, the rollout queue and the searches use it) exports a function once into
``<compilation cache>/exports/`` and, in a later process, reads it back instead of tracing it. Keys cover the source
of every module of the package, the jax version, the backend, the static settings and each input's shape, dtype and
placement. Files are written whole under a temporary name; an unreadable one is traced again. Programs are kept only
while :mod:`nabla_jax.compile_cache` is on; inputs on a multi-device mesh run the function directly. Details:
docs/design-notes.md.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable

import jax
from jax import export

FOLDER = "exports"  # under the compilation cache's folder
_directory: str | None = None
_loaded: dict[str, Callable] = {}  # key -> the jitted call of its program, for this process
_refused: set[str] = set()  # keys whose function could not be exported: called directly
_source_digest: str | None = None
_registered: set[type] = set()
_key_heads: dict = {}  # (source, jax settings, name, input tree, static settings) -> digest of all but the leaves


def enable(directory: str | None) -> None:
    """Keep programs in ``directory`` (None: stop keeping them)."""
    global _directory
    _directory = directory
    if directory is not None:
        os.makedirs(directory, exist_ok=True)


def directory() -> str | None:
    return _directory


def register_results(*types: type) -> None:
    """Let programs return these NamedTuple types (their trees are stored with the program)."""
    for cls in types:
        if cls not in _registered:
            export.register_namedtuple_serialization(cls, serialized_name=f"{cls.__module__}.{cls.__qualname__}")
            _registered.add(cls)


def source_digest() -> str:
    """A digest of every Python file of the package: programs traced from other source never match."""
    global _source_digest
    if _source_digest is None:
        root = os.path.dirname(os.path.abspath(__file__))
        digest = hashlib.sha256()
        for folder, subfolders, names in os.walk(root):
            subfolders.sort()
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    digest.update(os.path.relpath(path, root).encode())
                    with open(path, "rb") as handle:
                        digest.update(hashlib.sha256(handle.read()).digest())
        _source_digest = digest.hexdigest()
    return _source_digest


def _on_one_device(leaves) -> bool:
    for leaf in leaves:
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None and len(sharding.device_set) > 1:
            return False
    return True


# jax settings that change what a function traces to, beyond its inputs' types
TRACE_SETTINGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl",
                  "jax_threefry_partitionable", "jax_numpy_rank_promotion", "jax_numpy_dtype_promotion")


def _key(name: str, static: dict, tree, leaves) -> str:
    flags = tuple(str(getattr(jax.config, flag, None)) for flag in TRACE_SETTINGS)
    settings = (source_digest(), flags, name, tree, tuple(sorted(static.items())))
    try:
        head = _key_heads.get(settings)
    except TypeError:  # an unhashable setting: its digest is computed each call
        head, settings = None, None
    if head is None:  # the same for every call of a setting: computed once per process
        import jaxlib

        parts = [name, source_digest(), jax.__version__, jaxlib.__version__, jax.default_backend(), repr(flags),
                 repr(sorted(static.items())), str(tree)]
        head = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        if settings is not None:
            _key_heads[settings] = head
    avals = "\n".join(f"{jax.typeof(leaf)}|{getattr(leaf, 'sharding', None)}" for leaf in leaves)
    return hashlib.sha256(f"{head}\n{avals}".encode()).hexdigest()


def call(fn: Callable, static: dict, **arrays):
    """``fn(**arrays, **static)`` through its kept program when :func:`enable` gave a folder (else directly). ``fn``
    must be traceable (a ``jax.jit`` function with ``static`` as its static arguments, typically); ``static`` holds
    its hashable settings, ``arrays`` its array arguments (any pytrees). The compiled program is named as ``fn``, so
    compile counts by name stay the same."""
    name = fn.__name__
    leaves, tree = jax.tree.flatten(arrays)
    if _directory is None or not _on_one_device(leaves):
        return fn(**arrays, **static)
    key = _key(name, static, tree, leaves)
    if key in _refused:
        return fn(**arrays, **static)
    run = _loaded.get(key)
    if run is None:
        exported = _read(key)
        if exported is None:
            exported = _export(name, fn, static, tree, leaves, key)
        if isinstance(exported, Exception):
            result = fn(**arrays, **static)  # the function's own errors are raised here, as without the cache
            _refused.add(key)
            warnings.warn(f"{name}: not kept in the program cache ({type(exported).__name__}: {exported}); it is "
                          "traced in each process", stacklevel=2)
            return result
        run = _named_call(name, exported)
        _loaded[key] = run
    return run(*leaves)


def _named_call(name: str, exported) -> Callable:
    def program(*leaves):
        return exported.call(*leaves)

    program.__name__ = program.__qualname__ = name
    return jax.jit(program)


def _path(key: str) -> str:
    return os.path.join(_directory, key + ".jaxexport")


def _read(key: str):
    """The kept program, or None when there is none or it cannot be read (then it is traced again and rewritten)."""
    try:
        with open(_path(key), "rb") as handle:
            return export.deserialize(bytearray(handle.read()))
    except Exception:  # noqa: BLE001 - absent, damaged or foreign
        return None


def _export(name: str, fn: Callable, static: dict, tree, leaves, key: str):
    def program(*flat):
        return fn(**jax.tree.unflatten(tree, flat), **static)

    program.__name__ = program.__qualname__ = name
    try:
        exported = export.export(jax.jit(program))(*leaves)
        blob = exported.serialize()
    except Exception as err:  # noqa: BLE001 - returned: the caller runs the function directly
        return err
    handle = tempfile.NamedTemporaryFile(dir=_directory, prefix=key, suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(blob)
        os.replace(handle.name, _path(key))
    except OSError:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
    return exported
