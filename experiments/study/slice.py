"""A small committed slice of the study's and the tuning split's records (the first 8 problems, seeds 0 and 1), on
which the tests run ``make_report`` and compare its output with the committed ``slice/expected.md`` and
``slice/expected_tuning.md``.

    python -m experiments.study.slice        # rewrites experiments/study/slice/ from the committed records
"""

from __future__ import annotations

import gzip
import json
import os
import shutil

from experiments.study import make_report

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDS, TUNING, SLICE = os.path.join(HERE, "records"), os.path.join(HERE, "tuning_records"), os.path.join(HERE, "slice")
SLICE_TUNING = os.path.join(SLICE, "tuning")
PROBLEMS, SEEDS = 8, (0, 1)


def write_slice() -> None:
    _cut(RECORDS, SLICE)
    _cut(TUNING, SLICE_TUNING)
    out = os.path.join(SLICE, "out")
    text = make_report.make_report(SLICE, out, SLICE_TUNING)
    with open(os.path.join(out, "tuning.md"), encoding="utf-8") as handle:
        tuning = handle.read()
    shutil.rmtree(out)
    for name, content in (("expected.md", text), ("expected_tuning.md", tuning)):
        with open(os.path.join(SLICE, name), "w", encoding="utf-8") as handle:
            handle.write(content)


def _cut(records: str, into: str) -> None:
    for name in sorted(os.listdir(records)):
        source = os.path.join(records, name)
        if not os.path.isdir(source):
            continue
        with gzip.open(os.path.join(source, "records.jsonl.gz"), "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        first = sorted({r["problem_index"] for r in rows})[:PROBLEMS]
        kept = [r for r in rows if r["problem_index"] in first and r["seed"] in SEEDS]
        target = os.path.join(into, name)
        os.makedirs(target, exist_ok=True)
        with open(os.path.join(target, "records.jsonl.gz"), "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as handle:
            for row in kept:
                handle.write((json.dumps(row, sort_keys=True) + "\n").encode())
        shutil.copyfile(os.path.join(source, "fingerprint.json"), os.path.join(target, "fingerprint.json"))


if __name__ == "__main__":
    write_slice()
