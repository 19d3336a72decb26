"""Record shards of a multi-process evaluation: ``records.process-I.jsonl`` per process, merged by process 0.

Each process appends its own batches' records to its shard (the ``records.jsonl`` write path; the shard is
``flock``-ed, one writer per shard). A process counts as done every record of ``records.jsonl`` and of every shard,
so a killed run resumes whatever the number of processes. Process 0 merges the shards' new records into
``records.jsonl`` in single-process order, with one atomic rename, and only then deletes the shards (the next merge
skips records already merged). The results directory must be on a filesystem every process sees.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable

from nabla_jax.evaluation.records import (
    RECORDS,
    RecordStore,
    check_directory,
    check_methods,
    exclusive_lock,
    parse_records,
    read_fingerprint,
    record_key,
)

SHARD_PATTERN = re.compile(r"records\.process-(\d+)\.jsonl")


def shard_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"records.process-{index}.jsonl")


def shard_paths(directory: str) -> list[str]:
    """The shard files in ``directory``, by process index."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), "records.process-*.jsonl")):
        match = SHARD_PATTERN.fullmatch(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def read_shards(directory: str, fingerprint: dict) -> list[dict]:
    """Every complete record of every shard (a record in two shards is kept once)."""
    records, seen = [], set()
    for path in shard_paths(directory):
        shard, _ = parse_records(path)
        check_methods(path, shard, fingerprint)
        for record in shard:
            if record_key(record) not in seen:
                seen.add(record_key(record))
                records.append(record)
    return records


def open_shard(directory: str, fingerprint: dict, index: int) -> RecordStore:
    """Process ``index``'s store: done = ``records.jsonl`` and all shards; appends go to its own shard.
    Call after process 0 has opened the directory (it creates it and writes the fingerprint)."""
    _, merged, records, _ = check_directory(directory, fingerprint)
    path = shard_path(directory, index)
    lock = exclusive_lock(path, "ab", f"another process is writing {path}")
    try:
        complete = parse_records(path)[1]
        if os.path.getsize(path) > complete:
            os.truncate(path, complete)  # the unterminated line a kill left behind
        known = {record_key(r) for r in records}
        records += [r for r in read_shards(directory, merged) if record_key(r) not in known]
        return RecordStore(directory, records, lock, path=path)
    except BaseException:
        lock.close()
        raise


def merge_shards(store: RecordStore, order: Callable[[dict], tuple]) -> int:
    """Move the shards' records that ``store`` (the directory's ``records.jsonl``, open) lacks into it, sorted
    by ``order``, in one atomic rename; then delete the shards. Returns how many records were added."""
    assert store.path == os.path.join(store.directory, RECORDS)
    paths = shard_paths(store.directory)
    if not paths:
        return 0
    fingerprint = read_fingerprint(store.directory)
    new = [r for r in read_shards(store.directory, fingerprint) if not store.done(*record_key(r))]
    if new:
        store.extend_atomic(sorted(new, key=order))
    for path in paths:
        os.remove(path)
    return len(new)
