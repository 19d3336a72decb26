"""The testbed's four rewards side by side: how each ranks the policy's samples, whether its gradient repairs a
known wrong token, and what the ∇-Reasoner gains with it over blind resampling, paired.

    python -m experiments.testbed.reward_kinds run      # the four demos (resumable; about 4 x 4 min on 2 cores)
    python -m experiments.testbed.reward_kinds report   # the table, from the committed records

``run`` runs ``nabla-jax demo --reward KIND`` for each kind (200 test problems, seeds 0, 1, 2, the official
MATH-500 settings but the gradient-norm test) into ``OUT/demo_KIND`` and stores each run's records, gzipped and
without texts, under ``experiments/testbed/results/``. ``report`` reads those records, the bracket
(``experiments/testbed/brackets.json``, from :mod:`experiments.testbed.measure`) and the repair table
(``experiments/testbed/results/gradient_repair.json``, from :mod:`experiments.testbed.gradient_repair`) and writes
``experiments/testbed/results/reward_kinds.md``; rerunning it on the same files writes the same bytes. No setting
is chosen from these numbers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys

from nabla_jax.evaluation.paired import compare

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
KINDS = ("outcome", "process", "likelihood", "classifier")
PAIRS = (("nabla@8", "nabla_no_dto@8"), ("nabla@8", "bon@8"))
FAST_LR = 0.3  # the learning rate where the repair rates differ most between the rewards


def records_path(kind: str, run: str = "demo") -> str:
    return os.path.join(RESULTS, f"{run}_{kind}.records.jsonl.gz")


def store(directory: str, path: str) -> None:
    """A run's records, without texts, gzipped (``mtime=0``: the same records give the same bytes)."""
    with open(os.path.join(directory, "records.jsonl"), encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as handle:
        for row in rows:
            row.pop("text", None)
            row.pop("token_ids", None)
            handle.write((json.dumps(row, sort_keys=True) + "\n").encode())


def run(out: str, problems: int, seeds: str) -> None:
    """Per kind: the demo, then the ∇-Reasoner alone at ``FAST_LR`` with the demo's every other setting."""
    from nabla_jax.bundled import resolve_spec
    from nabla_jax.cli import main
    from nabla_jax.commands.demo import DEMO_NABLA, REWARDS
    from nabla_jax.commands.parsing import seed_list
    from nabla_jax.evaluation.context import DecodeSettings
    from nabla_jax.evaluation.runner import run_eval

    os.makedirs(RESULTS, exist_ok=True)
    for kind in KINDS:
        directory = os.path.join(out, f"demo_{kind}")
        code = main(["demo", "--reward", kind, "--problems", str(problems), "--seeds", seeds, "--out", directory])
        if code:
            raise SystemExit(f"demo --reward {kind} failed ({code})")
        store(directory, records_path(kind))
        fast = os.path.join(out, f"lr_{kind}")
        run_eval("testbed", "nabla@8", resolve_spec("testbed:policy"), REWARDS[kind], out=fast, seeds=seed_list(seeds),
                 ns=(8,), limit=problems, settings=DecodeSettings.of(DEMO_NABLA.replace(max_new_tokens=48)),
                 batch_size=8, options={"wbon_temperature": 1.0, "nabla": DEMO_NABLA.replace(learning_rate=FAST_LR)})
        store(fast, records_path(kind, "lr"))


def read_records(kind: str, run: str = "demo") -> list[dict]:
    with gzip.open(records_path(kind, run), "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def accuracy(records: list[dict], method: str) -> float:
    rows = [r for r in records if r["method"] == method]
    return 100.0 * sum(bool(r["correct"]) for r in rows) / len(rows)


DEMO_METHODS = ("greedy", "sc@8", "bon@2", "bon@4", "bon@8", "wbon@8", "nabla@8", "nabla_no_dto@8")


def demo_table(kind: str) -> str:
    """The demo's main rows for one reward, from its records (wall time is left out: the runs shared the machine)."""
    from nabla_jax.evaluation.metrics import summarize

    rows = {r["method"]: r for r in summarize(read_records(kind))}
    lines = ["| method | accuracy % (3 seeds) | 95% CI (problems) | calls (official) | FLOPs | rejection % |",
             "|---|---|---|---|---|---|"]
    for method in DEMO_METHODS:
        r = rows[method]
        lo, hi = r["ci95_problems"]
        rejection = r.get("rejection_rate")
        lines.append(f"| {method} | {100 * r['accuracy']:.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] | "
                     f"{r['official_calls']:.1f} | {r['flops']:.2e} | "
                     f"{'–' if rejection is None else f'{100 * rejection:.1f}'} |")
    return "\n".join(lines) + "\n"


def kind_cells(kind: str, brackets: dict, repair: dict) -> dict:
    """One reward's figures, formatted once for both tables."""
    ranking = brackets["verifiers"][kind]
    rate = lambda settings, loss: repair[(kind, settings, loss)]["repair_rate"] * 100  # noqa: E731
    fast_row = repair[(kind, "lr 0.3", "full")]
    records = read_records(kind)
    blind, bon = (compare(records, a, b) for a, b in PAIRS)
    fast_records = [{**r, "method": "fast"} for r in read_records(kind, "lr")]
    fast = compare(fast_records + records, "fast", "nabla_no_dto@8")
    flops = {m: sum(r["flops"] for r in rs) / len(rs) for m, rs in (("fast", fast_records), *(
        (m, [r for r in records if r["method"] == m]) for m in ("bon@4", "bon@8")))}
    ci = lambda c: f"[{100 * c['difference_ci'][0]:+.1f}, {100 * c['difference_ci'][1]:+.1f}]"  # noqa: E731
    return {
        "auc": f"{ranking['within_problem_auc']:.3f}", "best_of_8": f"{100 * ranking['best_of_8']:.1f}",
        "repaired": (f"{rate('official', 'full'):.1f}", f"{rate('lr 0.3', 'full'):.1f}"),
        "moved_share": f"{100 * fast_row['repaired'] / max(fast_row['moved'], 1):.0f}",
        **{m: f"{accuracy(records, m):.1f}" for m in ("greedy", "bon@4", "bon@8", "nabla@8", "nabla_no_dto@8")},
        "blind": f"{100 * blind['difference']:+.1f} {ci(blind)}, p = {blind['mcnemar_p']:.2g}",
        "bon": f"{100 * bon['difference']:+.1f} {ci(bon)}",
        "fast": f"{100 * fast['accuracy_a']:.1f}", "fast_flops": f"{flops['fast']:.2e}",
        "fast_blind": f"{100 * fast['difference']:+.1f} {ci(fast)}, p = {fast['mcnemar_p']:.2g}",
        "bon4_flops": f"{flops['bon@4']:.2e}", "bon8_flops": f"{flops['bon@8']:.2e}",
    }


def report() -> str:
    with open(os.path.join(HERE, "brackets.json"), encoding="utf-8") as handle:
        brackets = json.load(handle)["brackets"]
    with open(os.path.join(RESULTS, "gradient_repair.json"), encoding="utf-8") as handle:
        repair = json.load(handle)
    repair_rows = {(r["reward"], r["settings"], r["loss"]): r for r in repair["rows"]}
    cells = {kind: kind_cells(kind, brackets, repair_rows) for kind in KINDS}
    lines = [
        "| reward | AUC within problem | best-of-8 % | repaired %: official / lr 0.3 (of moved at lr 0.3) | "
        "greedy % | bon@8 % | nabla@8 % | nabla_no_dto@8 % | nabla − blind (points) [95% CI], McNemar p | "
        f"nabla − bon@8 (points) [95% CI] | nabla@8 at lr {FAST_LR} % (FLOPs) | its − blind (points) [95% CI], "
        "McNemar p | bon@4 % (FLOPs) | bon@8 FLOPs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, c in cells.items():
        lines.append(
            f"| {kind} | {c['auc']} | {c['best_of_8']} | {c['repaired'][0]} / {c['repaired'][1]} ({c['moved_share']}%) | "
            f"{c['greedy']} | {c['bon@8']} | {c['nabla@8']} | {c['nabla_no_dto@8']} | {c['blind']} | {c['bon']} | "
            f"{c['fast']} ({c['fast_flops']}) | {c['fast_blind']} | {c['bon@4']} ({c['bon4_flops']}) | {c['bon8_flops']} |")
    sites = repair["rows"][0]["sites"]
    off = repair_rows[(KINDS[0], "lr 0.3", "reward off")]["repair_rate"] * 100
    runner_up = 100 * repair["rows"][0]["right_is_runner_up"] / sites
    first = read_records(KINDS[0])
    seeds = sorted({r["seed"] for r in first})
    problems = len({r["problem_id"] for r in first})
    notes = [
        "",
        f"Ranking: {brackets['problems']} test problems x {brackets['samples']} policy samples at T = 1 "
        "(`python -m experiments.testbed.measure`). Repair: the share of the policy's "
        f"{sites} first arithmetic errors (greedy, validation problems) that one DTO call turns into the right digit "
        f"(`python -m experiments.testbed.gradient_repair`); with the reward off (the policy's likelihood alone) "
        f"{off:.1f}%. The right digit is the policy's runner-up at {runner_up:.0f}% of the sites, so a move that is "
        "not guided lands on it about that often: compare the share of moves that repair with it. "
        f"Methods: `nabla-jax demo --reward KIND` on test problems 0-{problems - 1}, seeds {seeds} "
        f"(`python -m experiments.testbed.reward_kinds run`), and `nabla@8` again at learning rate {FAST_LR} with every "
        "other setting the demo's; paired over (problem, seed). Test problems 0-199 are the tuning split: "
        f"{FAST_LR} is the largest learning rate of the earlier learning-rate sweep on these same problems (with the "
        "likelihood reward), so the last two columns are not held-out numbers.",
    ]
    compact = ["", "In short:", "",
               "| reward | AUC within problem | repaired at lr 0.01 / 0.3 | nabla@8 − blind resampling, lr 0.01 | "
               f"nabla@8 at lr {FAST_LR} − blind | nabla@8 at lr {FAST_LR} (FLOPs) | bon@4 (FLOPs) | bon@8 |",
               "|---|---|---|---|---|---|---|---|"]
    for kind, c in cells.items():
        compact.append(f"| {kind} | {c['auc']} | {c['repaired'][0]}% / {c['repaired'][1]}% | {c['blind']} | "
                       f"{c['fast_blind']} | {c['fast']}% ({c['fast_flops']}) | {c['bon@4']}% ({c['bon4_flops']}) | "
                       f"{c['bon@8']}% |")
    records = os.path.relpath(records_path("outcome"), HERE)
    demo = ["", f"The demo with the outcome reward (`nabla-jax demo`, its default; records `{records}`):", "",
            demo_table("outcome")]
    return "\n".join(lines + notes + compact + demo)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the four demos and store their records")
    run_parser.add_argument("--out", default="runs/reward_kinds")
    run_parser.add_argument("--problems", type=int, default=200)
    run_parser.add_argument("--seeds", default="0,1,2")
    sub.add_parser("report", help="write results/reward_kinds.md from the stored records")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out, args.problems, args.seeds)
    text = report()
    with open(os.path.join(RESULTS, "reward_kinds.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
