"""The README's main command, ``nabla-jax demo``, end to end on a few problems with the bundled policy and reward."""

import json
import math
import os

from nabla_jax.cli import main


def test_demo_runs_every_method_on_the_bundled_testbed(tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert main(["demo", "--problems", "2", "--seeds", "0", "--n", "2", "--out", out, "--no-progress"]) == 0
    with open(os.path.join(out, "records.jsonl"), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    methods = sorted({r["method"] for r in records})
    assert methods == ["bon@1", "bon@2", "greedy", "nabla@2", "nabla_no_dto@2", "sc@1", "sc@2", "wbon@1", "wbon@2"]
    assert len(records) == 2 * len(methods)  # one per (method, problem) for the one seed
    nabla = [r for r in records if r["method"] == "nabla@2"]
    assert all(r["official_calls"] >= r["generated_tokens"] > 0 and "dto_runs" in r["stats"] for r in nabla)
    printed = capsys.readouterr().out
    assert "| nabla@2 |" in printed and "| greedy |" in printed and "rejection" in printed
    assert {"accuracy_vs_calls.png", "accuracy_vs_flops.png", "summary.json"} <= set(os.listdir(out))
    assert "reward: outcome (testbed:outcome)" in printed  # the paper's setting: the shipped outcome reward model
    bon = [r for r in records if r["method"] == "bon@2"]
    assert all(len(r["candidates"]) == 2 and all(math.isfinite(c["reward"]) for c in r["candidates"]) for r in bon)
