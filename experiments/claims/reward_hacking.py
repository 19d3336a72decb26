"""Reward-hacking audit: the reward a cell optimised (the proxy) against the exact grader, along a sweep.

Every record's final text is rescored with (a) the reward its method used (read from the cell's fingerprint.json)
and (b) held-out rewards it did not optimise (by default the testbed's likelihood verifier and the testbed PRM,
aggregated by min), through the library's batched scorer (:func:`nabla_jax.rewards.scoring.score_batch`, reward
inputs built by :func:`nabla_jax.templates.reward_input_template` around the response's ids, its end-of-turn token
kept when the record finished on it, as the evaluation scores candidates). Per cell and method it prints:

- exact accuracy (the testbed grader is exact);
- the mean proxy reward and the mean held-out rewards of the final answers;
- "proxy prefers wrong": the share of wrong final answers whose proxy reward beats the proxy reward of the
  problem's reference solution (the proxy would rather have the wrong answer than the truth);
- the Spearman correlation of the proxy reward with correctness over the cell's records.

Reward hacking shows as the proxy reward rising along a sweep while accuracy (and the held-out rewards) fall, and as
a growing share of wrong answers the proxy prefers to the truth. Writes ``reward_hacking.md`` and
``proxy_vs_accuracy.png`` to ``--out``.

    python -m experiments.claims.reward_hacking runs/claims/dto_learning_rate runs/claims/dto_lambda \\
        --out experiments/claims/results/reward_hacking
"""

from __future__ import annotations

import argparse
import json
import os
import re

import numpy as np

from nabla_jax.evaluation.records import load_directory
from nabla_jax.rewards import load_reward
from nabla_jax.rewards.scoring import score_batch
from nabla_jax.templates import encode, reward_input_template, reward_pad_id
from nabla_jax.testbed import PRM_DIR, TEST_JSONL, VERIFIER_DIR, task

HELD_OUT = {
    "verifier": ("likelihood:" + VERIFIER_DIR, {"clip": -6.0}),
    "PRM min": (PRM_DIR, {"aggregate": "min", "separator": None, "step_split": "\n"}),
}


def cell_dirs(paths: list[str]) -> list[tuple[str, str]]:
    """``(sweep, cell directory)`` for every eval directory under (or at) each path, in name order."""
    out = []
    for path in paths:
        if os.path.isfile(os.path.join(path, "records.jsonl")):
            out.append((os.path.basename(os.path.dirname(os.path.normpath(path))), path))
            continue
        for name in sorted(os.listdir(path)):
            if os.path.isfile(os.path.join(path, name, "records.jsonl")):
                out.append((os.path.basename(os.path.normpath(path)), os.path.join(path, name)))
    return out


def test_problems() -> dict[str, task.Problem]:
    """The testbed benchmark's problems by record id."""
    with open(TEST_JSONL, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {row["id"]: task.parse_prompt(row["problem"]) for row in rows}


class Scorer:
    """Loaded rewards, keyed by (spec, options), each with a memo of (prompt, text, eos) -> reward."""

    def __init__(self, max_rows: int = 256):
        self.rewards: dict = {}
        self.memo: dict = {}
        self.max_rows = max_rows

    def reward(self, spec: str, options: dict):
        key = (spec, json.dumps(options, sort_keys=True))
        if key not in self.rewards:
            self.rewards[key] = load_reward(spec, **options)
        return key, self.rewards[key]

    def scores(self, spec: str, options: dict, items: list[tuple[str, str, bool]]) -> np.ndarray:
        """Rewards of ``(prompt, response text, ended on EOS)`` items."""
        key, reward = self.reward(spec, options)
        memo = self.memo.setdefault(key, {})
        todo = sorted({item for item in items if item not in memo})
        if todo:
            tok = reward.tokenizer
            rows = []
            for prompt, text, eos in todo:
                prefix, postfix = reward_input_template(reward, prompt)
                rows.append((prefix, encode(tok, text) + ([tok.eos_token_id] if eos else []), postfix))
            values = score_batch(reward, rows, reward_pad_id(tok, reward.config), self.max_rows)
            memo.update(zip(todo, (float(v) for v in values)))
        return np.asarray([memo[item] for item in items], np.float64)


def proxy_of(fingerprint: dict, method: str) -> tuple[str, dict] | None:
    """The reward spec and load options ``method`` used in a cell (None for methods without a reward)."""
    reward = fingerprint["methods"].get(method, {}).get("reward")
    if not reward:
        return None
    options = dict(reward.get("kind_options") or {})
    source = reward.get("source") or reward["path"]  # older fingerprints name the spec "path"
    if not source.startswith("likelihood:"):
        options.pop("clip", None)
    return source, options


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(set(x.tolist())) < 2 or len(set(y.tolist())) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def audit_cell(scorer: Scorer, problems: dict, directory: str, method_filter: re.Pattern | None) -> list[dict]:
    with open(os.path.join(directory, "fingerprint.json"), encoding="utf-8") as handle:
        fingerprint = json.load(handle)
    records = load_directory(directory)[1]
    by_method: dict[str, list[dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    rows = []
    for method, recs in by_method.items():
        if method_filter is not None and not method_filter.fullmatch(method):
            continue
        proxy = proxy_of(fingerprint, method)
        if proxy is None:
            continue
        items = []
        for r in recs:
            chosen = r["candidates"][r.get("chosen") or 0] if r.get("candidates") else {}
            items.append((task.format_prompt(problems[r["problem_id"]]), r["text"], chosen.get("finish") == "eos"))
        refs = [(prompt, task.format_solution(task.parse_prompt(prompt)), True) for prompt, _, _ in items]
        correct = np.asarray([bool(r["correct"]) for r in recs])
        proxy_scores = scorer.scores(*proxy, items)
        reference = scorer.scores(*proxy, refs)
        # a check that rescoring reproduces what the method scored: best-of-N records carry their candidates' rewards
        stored = [(c["reward"], s) for r, s in zip(recs, proxy_scores)
                  for c in [r["candidates"][r.get("chosen") or 0]] if c.get("reward") is not None]
        wrong = ~correct
        row = {
            "cell": os.path.basename(os.path.normpath(directory)),
            "method": method,
            "proxy": proxy[0].replace(os.path.dirname(VERIFIER_DIR) + os.sep, "testbed:").replace(os.getcwd() + os.sep, ""),
            "proxy_options": proxy[1],
            "records": len(recs),
            "accuracy": float(correct.mean()),
            "proxy_mean": float(proxy_scores.mean()),
            "proxy_mean_correct": float(proxy_scores[correct].mean()) if correct.any() else float("nan"),
            "proxy_mean_wrong": float(proxy_scores[wrong].mean()) if wrong.any() else float("nan"),
            "reference_proxy_mean": float(reference.mean()),
            "wrong": int(wrong.sum()),
            "proxy_prefers_wrong": float((proxy_scores[wrong] > reference[wrong]).mean()) if wrong.any() else float("nan"),
            "spearman_proxy_correct": spearman(proxy_scores, correct.astype(float)),
            "rescore_max_abs_diff": max((abs(a - b) for a, b in stored), default=None),
        }
        for name, (spec, options) in HELD_OUT.items():
            held = scorer.scores(spec, options, items)
            row[f"held_out:{name}"] = float(held.mean())
            row[f"spearman_held_out:{name}"] = spearman(held, correct.astype(float))
        rows.append(row)
    return rows


def short_cell(cell: str) -> str:
    parts = [p for p in cell.split(",") if "=" in p and not p.startswith("method=")]
    return ",".join(p.split(".", 1)[-1] for p in parts) or cell


def markdown(results: list[tuple[str, dict]]) -> str:
    held = list(HELD_OUT)
    head = (["sweep", "cell", "method", "proxy (optimised)", "accuracy %", "proxy mean", "proxy: correct / wrong",
             "proxy of the reference"] + [f"held-out {h}" for h in held]
            + ["proxy prefers a wrong answer to the truth %", "Spearman(proxy, correct)"]
            + [f"Spearman({h}, correct)" for h in held])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sweep, r in results:
        proxy = r["proxy"] + ("" if not r["proxy_options"].get("aggregate") else f" ({r['proxy_options']['aggregate']})")
        cells = [sweep, short_cell(r["cell"]), r["method"], proxy, f"{100 * r['accuracy']:.1f}", f"{r['proxy_mean']:.3f}",
                 f"{r['proxy_mean_correct']:.3f} / {r['proxy_mean_wrong']:.3f}", f"{r['reference_proxy_mean']:.3f}"]
        cells += [f"{r[f'held_out:{h}']:.3f}" for h in held]
        cells += [f"{100 * r['proxy_prefers_wrong']:.1f} (of {r['wrong']})", f"{r['spearman_proxy_correct']:+.3f}"]
        cells += [f"{r[f'spearman_held_out:{h}']:+.3f}" for h in held]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[tuple[str, dict]], path: str) -> None:
    """One panel per sweep: accuracy against the mean proxy reward, a line per method through the sweep's cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = list(dict.fromkeys(s for s, _ in results))
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.6 * len(sweeps), 4.2), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps):
        methods = list(dict.fromkeys(r["method"] for s, r in results if s == sweep))
        for method in methods:
            pts = [r for s, r in results if s == sweep and r["method"] == method]
            xs, ys = [r["proxy_mean"] for r in pts], [100 * r["accuracy"] for r in pts]
            ax.plot(xs, ys, marker="o", label=method)
            for r, x, y in zip(pts, xs, ys):
                ax.annotate(short_cell(r["cell"]), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(sweep, fontsize=9)
        ax.set_xlabel("mean proxy reward of the final answers")
        ax.set_ylabel("exact accuracy %")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> list[tuple[str, dict]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="sweep output directories (or single eval directories)")
    parser.add_argument("--methods", default=None, help="comma-separated regular expressions; a method is kept when it "
                        "matches one of them in full")
    parser.add_argument("--held-out", default=",".join(HELD_OUT), help=f"held-out rewards, of {', '.join(HELD_OUT)}")
    parser.add_argument("--out", default=None, help="write reward_hacking.md, reward_hacking.json, proxy_vs_accuracy.png here")
    args = parser.parse_args(argv)
    pattern = re.compile("|".join(f"(?:{m})" for m in args.methods.split(","))) if args.methods else None
    for name in set(HELD_OUT) - set(args.held_out.split(",")):
        del HELD_OUT[name]
    scorer, problems, results = Scorer(), test_problems(), []
    for sweep, directory in cell_dirs(args.dirs):
        for row in audit_cell(scorer, problems, directory, pattern):
            results.append((sweep, row))
            print(f"{sweep} | {row['cell']} | {row['method']}: accuracy {100 * row['accuracy']:.1f}%, proxy "
                  f"{row['proxy_mean']:.3f}, prefers wrong {100 * row['proxy_prefers_wrong']:.1f}%, "
                  f"rho {row['spearman_proxy_correct']:+.3f}, rescoring check {row['rescore_max_abs_diff']}", flush=True)
    table = markdown(results)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "reward_hacking.md"), "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
        with open(os.path.join(args.out, "reward_hacking.json"), "w", encoding="utf-8") as handle:
            json.dump([{"sweep": s, **r} for s, r in results], handle, indent=1)
        plot(results, os.path.join(args.out, "proxy_vs_accuracy.png"))
    return results


if __name__ == "__main__":
    main()
