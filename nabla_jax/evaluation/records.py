"""The results directory: ``fingerprint.json`` + ``records.jsonl``, one JSON line per (method, problem, seed).

Every record is one ``write`` of a complete line, then ``flush`` and ``fsync``, so a record on disk is whole or is
the file's unterminated last line, which :meth:`RecordStore.open` drops and recomputes. Any other invalid or
repeated line is an error ``FILE:LINE: ...`` that changes nothing, and the fingerprint (the settings that determine
a record's content) must equal the stored one. One writer at a time: ``.lock`` is held with ``flock`` for the
store's lifetime. A multi-process run writes one shard per process, merged here at the end
(:mod:`nabla_jax.evaluation.shards`). The resume rules in full: docs/design-notes.md.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sys

from nabla_jax.evaluation.identity import comparable, is_identity

RECORDS = "records.jsonl"
FINGERPRINT = "fingerprint.json"
REQUIRED = {"method": str, "problem_id": str, "seed": int, "correct": bool}
NUMBER, INT, NONE = (int, float), (int,), (type(None),)
# fields a report reads, checked when present: a hand-edited "correct": "yes" must not count as correct
TYPES = {
    "n": INT + NONE, "problem_index": INT, "answer": (str,) + NONE, "gold": (str,), "text": (str,) + NONE,
    "chosen": INT + NONE, "candidates": (list,), "wall_time_s": NUMBER, "compiled": (bool,), "stats": (dict,),
    "error": (str,) + NONE, "official_calls": NUMBER, "full_calls": NUMBER, "flops": NUMBER + NONE,
    "generated_tokens": NUMBER, "rollouts": NUMBER, "reward_calls": NUMBER,
}


class RecordsError(ValueError):
    """A results file line that is not a valid record; the message starts with ``FILE:LINE:``."""


class FingerprintMismatch(ValueError):
    """The directory holds results of a different configuration."""


def _finite_copy(value, path: str, missing: list[str]):
    """``value`` with every NaN/inf float replaced by None; their dotted paths go to ``missing``."""
    if isinstance(value, float) and not math.isfinite(value):
        missing.append(path)
        return None
    if isinstance(value, dict):
        return {k: _finite_copy(v, f"{path}.{k}" if path else str(k), missing) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_copy(v, f"{path}.{i}", missing) for i, v in enumerate(value)]
    return value


def record_line(record: dict) -> bytes:
    """One strict-JSON line (no bare NaN/Infinity, which other JSON readers reject): a non-finite number is written
    as null and its field listed under ``"nonfinite_fields"``, the reason it is missing."""
    missing: list[str] = []
    clean = _finite_copy(record, "", missing)
    if missing:
        clean["nonfinite_fields"] = missing
    return json.dumps(clean, ensure_ascii=False, sort_keys=True, allow_nan=False).encode("utf-8") + b"\n"


def record_key(record: dict) -> tuple[str, str, int]:
    return record["method"], record["problem_id"], record["seed"]


def parse_records(path: str) -> tuple[list[dict], int]:
    """Records of ``path`` (gzipped when it ends in ``.gz``) and the byte length of its complete lines (a partial
    last line is excluded)."""
    if path.endswith(".gz"):
        import gzip

        with gzip.open(path, "rb") as f:
            data = f.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    complete = data.rfind(b"\n") + 1
    records, seen = [], {}
    for number, raw in enumerate(data[:complete].split(b"\n")[:-1], start=1):
        where = f"{path}:{number}"
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RecordsError(f"{where}: not a JSON record ({err})") from None
        if not isinstance(record, dict):
            raise RecordsError(f"{where}: expected a JSON object")
        check_record_types(record, where)
        key = record_key(record)
        if key in seen:
            raise RecordsError(f"{where}: duplicate record {key} (first on line {seen[key]})")
        seen[key] = number
        records.append(record)
    return records, complete


def _type_ok(value, kinds: tuple) -> bool:
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def check_record_types(record: dict, where: str) -> None:
    """Required fields present with their types, other known fields of their types when present; candidates'
    ``correct`` flags are booleans too."""
    for field, kind in REQUIRED.items():
        if not _type_ok(record.get(field), (kind,)):
            raise RecordsError(f"{where}: field {field!r} missing or not a {kind.__name__} (got {record.get(field)!r})")
    for field, kinds in TYPES.items():
        if field in record and not _type_ok(record[field], kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise RecordsError(f"{where}: field {field!r} must be {names}, got {record[field]!r}")
    for i, candidate in enumerate(record.get("candidates") or []):
        if not isinstance(candidate, dict) or not _type_ok(candidate.get("correct", False), (bool,)):
            raise RecordsError(f"{where}: candidate {i} must be an object whose 'correct' is a bool")


def read_fingerprint(directory: str) -> dict | None:
    path = os.path.join(directory, FINGERPRINT)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise RecordsError(f"{path}:{err.lineno}: invalid fingerprint JSON ({err.msg})") from None


def _write_atomic(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _differences(old, new, prefix="") -> list[str]:
    if is_identity(old) and is_identity(new):  # a model: by content, not by path
        old, new = comparable(old, new)
        changed = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        return [f"{prefix}{key}: {old.get(key)!r} -> {new.get(key)!r}" if key != "sha256" else
                f"{prefix[:-1]}: the checkpoint's content (weights, config or tokenizer) changed "
                f"(sha256 {str(old.get(key))[:12]}… -> {str(new.get(key))[:12]}…)" for key in changed]
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def check_methods(path: str, records: list[dict], fingerprint: dict) -> None:
    for record in records:
        if record["method"] not in fingerprint["methods"]:
            raise RecordsError(f"{path}: record of method {record['method']!r} not in {FINGERPRINT}")


def check_directory(directory: str, fingerprint: dict) -> tuple[dict | None, dict, list[dict], int]:
    """Read-only checks of :meth:`RecordStore.open`: ``(stored fingerprint, merged fingerprint, records, byte length
    of the complete lines)``; raises as ``open`` does."""
    for name in (FINGERPRINT, RECORDS):
        refuse_link(os.path.join(directory, name))
    stored = read_fingerprint(directory) if os.path.isdir(directory) else None
    path = os.path.join(directory, RECORDS)
    if stored is None and os.path.exists(path):
        raise FingerprintMismatch(f"{directory} has {RECORDS} but no {FINGERPRINT}; refusing to add to it")
    merged = RecordStore._merge(directory, stored, fingerprint)
    records, complete = parse_records(path) if os.path.exists(path) else ([], 0)
    check_methods(path, records, merged)
    return stored, merged, records, complete


def exclusive_lock(path: str, mode: str, busy: str):
    """``path`` opened with ``mode`` and ``flock``-ed exclusively (the kernel drops it when the process dies);
    FileExistsError(``busy``) when another process holds it."""
    lock = open(path, mode)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise FileExistsError(busy) from None
    return lock


_appended = 0  # records this process has written, over every store (what an interrupted command reports)


def appended_this_process() -> int:
    return _appended


class RecordStore:
    """Append-only, resumable record file of one results directory (use :meth:`open`)."""

    def __init__(self, directory: str, records: list[dict], lock_file, path: str | None = None):
        self.directory = directory
        self.path = path or os.path.join(directory, RECORDS)
        self.records = {record_key(r): r for r in records}
        self._lock = lock_file
        self._file = open(self.path, "ab")

    @classmethod
    def open(cls, directory: str, fingerprint: dict) -> "RecordStore":
        """Open (or create) ``directory`` for writing. ``fingerprint`` is ``{"shared": {...}, "methods": {key:
        {...}}}``; raises :class:`FingerprintMismatch` if it conflicts with the stored one."""
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise FileExistsError(f"{directory} exists and is not a directory")
        refuse_link(os.path.join(directory, ".lock"))
        os.makedirs(directory, exist_ok=True)
        lock = exclusive_lock(os.path.join(directory, ".lock"), "w", f"another nabla-jax eval is writing to {directory}")
        try:
            stored, merged, records, complete = check_directory(directory, fingerprint)
            path = os.path.join(directory, RECORDS)
            if merged != stored:
                _write_atomic(os.path.join(directory, FINGERPRINT), merged)
            if os.path.exists(path) and os.path.getsize(path) > complete:
                dropped = os.path.getsize(path) - complete
                print(f"note: {path}: dropping an unterminated last line ({dropped} bytes) that an interrupted run "
                      "left; its record is made again", file=sys.stderr)
                os.truncate(path, complete)
            return cls(directory, records, lock)
        except BaseException:
            lock.close()
            raise

    @staticmethod
    def _merge(directory: str, stored: dict | None, new: dict) -> dict:
        if stored is None:
            return new
        problems = _differences(stored.get("shared"), new["shared"])
        old_methods = stored.get("methods", {})
        for key, settings in new["methods"].items():
            if key in old_methods:
                problems += _differences(old_methods[key], settings, f"{key}.")
        if problems:
            raise FingerprintMismatch(
                f"{directory} holds results of a different configuration ({'; '.join(problems)}); "
                "use a new --out directory"
            )
        return {**stored, "shared": new["shared"], "methods": {**old_methods, **new["methods"]}}

    def done(self, method: str, problem_id: str, seed: int) -> bool:
        return (method, problem_id, seed) in self.records

    def append(self, record: dict) -> None:
        global _appended
        key = record_key(record)
        if key in self.records:
            raise RecordsError(f"{self.path}: record {key} already written")
        line = record_line(record)
        try:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:  # e.g. a full disk: name the file (a rerun resumes once it can be written)
            raise OSError(err.errno, f"{self.path}: could not write a record ({err.strerror or err})") from None
        self.records[key] = record
        _appended += 1

    def extend_atomic(self, records: list[dict]) -> None:
        """Append ``records`` all at once: the file plus the new lines is written to a temporary sibling and
        renamed into place, so a kill leaves either the old file or the new one."""
        lines = []
        for record in records:
            key = record_key(record)
            if key in self.records:
                raise RecordsError(f"{self.path}: record {key} already written")
            self.records[key] = record
            lines.append(record_line(record))
        self._file.close()
        with open(self.path, "rb") as f:
            data = f.read()
        tmp = f"{self.path}.tmp"
        with open(tmp, "wb") as f:
            f.write(data[: data.rfind(b"\n") + 1] + b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file = open(self.path, "ab")

    def close(self) -> None:
        self._file.close()
        self._lock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_directory(directory: str) -> tuple[dict, list[dict]]:
    """``(fingerprint, records)`` for reporting; a partial last line (a run in progress or killed) is ignored, and
    records of a method the fingerprint does not cover are refused (they were not made by this configuration).
    Without ``records.jsonl`` a gzipped ``records.jsonl.gz`` (an archived run) is read."""
    fingerprint = read_fingerprint(directory)
    path = os.path.join(directory, RECORDS)
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    if fingerprint is None:
        raise FileNotFoundError(f"{directory}: no {FINGERPRINT}; not a nabla-jax eval directory")
    records = parse_records(path)[0] if os.path.exists(path) else []
    check_methods(path, records, fingerprint)
    return fingerprint, records


def refuse_link(path: str) -> None:
    """A results file that is a symbolic link is refused: writing through it would change a file outside the
    results directory (and truncating a partial line would cut someone else's file)."""
    if os.path.islink(path):
        raise FileExistsError(f"{path} is a symbolic link; refusing to read or write results through it")
