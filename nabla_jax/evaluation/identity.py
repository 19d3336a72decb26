"""What identifies a model in a run's fingerprint: the content of its checkpoint, not where it lies.

``model_identity`` hashes the files that determine a model's outputs (weights, config, tokenizer, chat template,
generation config) into one sha256, and names the dtype the run computes in (``--dtype``, or the checkpoint's own
when none is given, so ``--dtype float32`` on a float32 checkpoint is no change). Resuming onto changed weights is
then refused, and the same weights at another path are accepted: the path is kept for the reader only.

Hashing a large checkpoint takes a while, so each file's hash is cached by (absolute path, size, mtime) in
``$NABLA_JAX_CACHE_DIR`` (default ``~/.cache/nabla-jax``); a cache that cannot be written is simply not kept.
"""

from __future__ import annotations

import hashlib
import json
import os

from nabla_jax.bundled import MODEL_PREFIXES
from nabla_jax.compile_cache import cache_root

# files of a checkpoint directory that determine what the model computes (README, licence and the like do not)
IDENTITY_FILES = (
    "config.json", "generation_config.json", "nabla_jax.json", "model.safetensors.index.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
    "tokenizer.model", "spiece.model", "vocab.txt", "chat_template.jinja", "chat_template.json",
)
SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}

def cache_file() -> str:
    return os.path.join(cache_root(), "file-sha256.json")


def _read_cache() -> dict:
    try:
        with open(cache_file(), encoding="utf-8") as f:
            cache = json.load(f)
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = cache_file()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(cache, f)
        os.replace(tmp, path)
    except OSError:
        pass


def file_sha256(path: str, cache: dict) -> tuple[str, bool]:
    """``(sha256, hashed afresh)`` of one file, from ``cache`` when its size and mtime are unchanged (a fresh hash
    is added to ``cache``)."""
    stat = os.stat(path)
    key, stamp = os.path.abspath(path), [stat.st_size, stat.st_mtime_ns]
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return entry["sha256"], False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    cache[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    return cache[key]["sha256"], True


def checkpoint_files(path: str) -> list[str]:
    """The files of a checkpoint that determine its outputs, relative to ``path`` (a directory), sorted."""
    names = []
    for parent, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(parent, path)
        for name in sorted(files):
            inside_params = rel != "." and rel.split(os.sep)[0] == "params"  # an Orbax checkpoint's arrays
            if inside_params or (rel == "." and (name in IDENTITY_FILES or name.endswith(".safetensors"))):
                names.append(name if rel == "." else os.path.join(rel, name))
    return names


def content_sha256(path: str) -> str:
    """One sha256 over a checkpoint's identity files (names and contents), or over the file itself."""
    cache = _read_cache()
    if os.path.isfile(path):
        result, fresh = file_sha256(path, cache)
    else:
        digest, fresh = hashlib.sha256(), False
        for name in checkpoint_files(path):
            file_digest, hashed = file_sha256(os.path.join(path, name), cache)
            digest.update(f"{name}\0{file_digest}\n".encode())
            fresh |= hashed
        result = digest.hexdigest()
    if fresh:
        _write_cache(cache)
    return result


def stored_dtype(path: str) -> str | None:
    """The dtype a checkpoint loads in when no ``--dtype`` is given (None when it cannot be read cheaply)."""
    if os.path.isfile(path):
        return "float32" if path.endswith(".gguf") else None  # GGUF tensors are dequantised to float32
    try:
        with open(os.path.join(path, "nabla_jax.json"), encoding="utf-8") as f:
            return str(json.load(f)["dtype"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    files = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    try:
        with safe_open(os.path.join(path, files[0]), framework="numpy") as handle:
            names = list(handle.keys())
            name = "model.embed_tokens.weight" if "model.embed_tokens.weight" in names else names[0]
            return SAFETENSORS_DTYPES.get(handle.get_slice(name).get_dtype())
    except Exception:  # an unreadable file: loading says what is wrong with it
        return None


def resolve_source(source: str) -> tuple[str, str]:
    """``(use, path)``: ``"judge:P"`` -> ``("judge", P)``; a bundled name -> its file."""
    use = "model"
    for prefix in MODEL_PREFIXES:
        if source.startswith(prefix):
            use, source = prefix[:-1], source[len(prefix):]
    from nabla_jax.bundled import resolve_model

    try:
        source = resolve_model(source)
    except FileNotFoundError:
        pass  # loading says what is missing
    return use, source


def model_identity(source: str | None, dtype: str | None) -> dict | None:
    """``{"source", "path", "sha256", "dtype"}`` (plus ``"use"`` for a ``judge:``/``likelihood:`` reward);
    ``sha256`` is None when the path does not exist (loading then says so). ``source`` (as given) and ``path`` are
    for the reader: resuming compares the rest (:func:`comparable`)."""
    if source is None:
        return None
    use, path = resolve_source(source)
    exists = bool(path) and os.path.exists(path)
    identity = {
        "source": source,
        "path": os.path.abspath(path) if exists else path,
        "sha256": content_sha256(path) if exists else None,
        "dtype": dtype or (stored_dtype(path) if exists else None) or "stored",
    }
    if use != "model":
        identity["use"] = use
    return identity


LOCATION = ("source", "path")


def comparable(old: dict, new: dict) -> tuple[dict, dict]:
    """The parts of two model identities that must agree on resume: everything but the location when both have a
    content hash. A directory written before content hashes (no ``sha256``) is matched as it was: by its path
    (absolute, or the source string as given), its dtype when it named one, and its other settings."""
    if old.get("sha256") and new.get("sha256"):
        strip = lambda identity: {k: v for k, v in identity.items() if k not in LOCATION}  # noqa: E731
        return strip(old), strip(new)
    if "sha256" in old:  # both written with hashes, one of a path that did not exist: compare where they point
        return old, new
    where = new.get("path")
    if old.get("path") in (new.get("source"), f"{new.get('use')}:{new.get('source')}"):
        where = old.get("path")
    legacy_new = {"path": where, **{k: v for k, v in new.items() if k not in (*LOCATION, "sha256", "use", "dtype")}}
    legacy_old = {k: v for k, v in old.items() if k != "dtype"}
    if old.get("dtype") not in (None, "stored"):
        legacy_new["dtype"], legacy_old["dtype"] = new.get("dtype"), old.get("dtype")
    return legacy_old, legacy_new


def is_identity(value) -> bool:
    return isinstance(value, dict) and "path" in value and "dtype" in value
