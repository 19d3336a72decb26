"""Do reward gradients point the right way? The repair rate of one DTO call at a known wrong token, per reward.

    python -m experiments.testbed.gradient_repair [--problems 1000] [--start 256] \
        [--reward NAME=SPEC ...] [--json experiments/testbed/results/gradient_repair.json] \
        [--markdown experiments/testbed/results/gradient_repair.md]
    python -m experiments.testbed.gradient_repair --from-json experiments/testbed/results/gradient_repair.json \
        --markdown experiments/testbed/results/gradient_repair.md   # the table again, from the stored numbers

On the testbed every wrong token is known. The policy decodes validation problems greedily; where its response first
leaves the reference solution at a digit of a step result or of the final answer (an arithmetic error, made with
the policy's argmax), one DTO call runs at that position: the committed tokens are the response before it, the
ahead tokens the policy's own greedy continuation from it (with its end-of-turn token), the init variables the
policy's logits there (``embedder="logits"``, ``update_positions="first"``, as the ∇-Reasoner calls it). Then:

- **repaired**: the optimised argmax at that position is the reference's token;
- **moved**: it is no longer the policy's wrong token.

Per reward, at the official settings (learning rate 0.01, 20 iterations, lambda = 1000) and at learning rate 0.3,
each with the full loss, with the reward alone (lambda = inf: ``nll_coeff = 0``) and with the reward off
(``reward_coeff = 0``: the policy's likelihood term alone, the same for every reward). Rates come with Wilson 95%
intervals. Problems are validation problems ``start .. start + problems - 1`` (the training scripts monitor the
first 256); no setting is chosen from these numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import numpy as np

from experiments.testbed import encoding, evaluation
from nabla_jax import load_policy
from nabla_jax.dto import DTOConfig, dto_models, dto_optimize
from nabla_jax.rewards import load_reward
from nabla_jax.testbed import POLICY_DIR, task

DEFAULT_REWARDS = ("outcome=testbed:outcome", "process=testbed:prm", "likelihood=likelihood:testbed:verifier",
                   "classifier=testbed:reward")  # each read with its checkpoint's own options
LEARNING_RATES = {"official": 0.01, "lr 0.3": 0.3}
LOSSES = {"full": {}, "reward only": {"nll_coeff": 0.0}, "reward off": {"reward_coeff": 0.0}}


class Site:
    """One known wrong token: the problem, the response's text before it, the wrong and the right character."""

    def __init__(self, problem: task.Problem, response: str, offset: int):
        self.problem, self.response, self.offset = problem, response, offset
        self.wrong, self.right = response[offset], task.format_solution(problem)[offset]


def result_digit_offsets(problem: task.Problem) -> set[int]:
    """Character offsets in the reference solution that hold a digit of a step result or of the final answer."""
    out, offset = set(), 0
    for line in task.format_solution(problem).split("\n"):
        first = len(task.ANSWER_PREFIX) if line.startswith("####") else line.index("=") + 1
        out.update(offset + c for c in range(first, len(line)))
        offset += len(line) + 1
    return out


def first_error(problem: task.Problem, response: str) -> int | None:
    """The offset where ``response`` first leaves the reference solution, if that is an arithmetic digit."""
    reference = task.format_solution(problem)
    same = 0
    while same < min(len(reference), len(response)) and reference[same] == response[same]:
        same += 1
    if same >= len(response) or same >= len(reference) or not response[same].isdigit():
        return None
    return same if same in result_digit_offsets(problem) else None


def find_sites(policy_config, policy_params, problems: list[task.Problem]) -> list[Site]:
    responses = evaluation.generate(policy_config, policy_params, problems, jax.random.key(0), 0.0, 1)
    sites = []
    for p, (text,) in zip(problems, responses):
        offset = first_error(p, text)
        if offset is not None:
            sites.append(Site(p, text, offset))
    return sites


def dto_inputs(policy, sites: list[Site]):
    """Per site: (prompt, committed ids, ahead ids, init logits ``[A, V]``) from the policy's own forward."""
    out = []
    for s in sites:
        prompt = task.format_prompt(s.problem)
        prompt_ids = encoding.prompt_ids(prompt)
        committed = encoding.text_ids(s.response[: s.offset])
        ahead = encoding.text_ids(s.response[s.offset :]) + [encoding.EOS_ID]
        ids = np.asarray([prompt_ids + committed + ahead], np.int32)
        logits = np.asarray(policy.logits(ids))[0]
        first = len(prompt_ids) + len(committed) - 1  # the position whose logits predict the first ahead token
        out.append((prompt, committed, ahead, logits[first : first + len(ahead)]))
    return out


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def measure(policy, reward, sites: list[Site], inputs, config: DTOConfig, models=None) -> dict:
    """One DTO call per site; the repair and move counts and rates."""
    prompts, committed, ahead, init = (list(x) for x in zip(*inputs))
    results = dto_optimize(policy, reward, prompts, committed, ahead, init, config, models=models)
    right = np.asarray([encoding.text_ids(s.right)[0] for s in sites])
    wrong = np.asarray([encoding.text_ids(s.wrong)[0] for s in sites])
    chosen = np.asarray([r.token_ids[0] for r in results])
    start = np.asarray([r.init_token_ids[0] for r in results])
    runner_up = np.asarray([np.argsort(x[0])[-2] for x in init])
    n = len(sites)
    repaired, moved = int((chosen == right).sum()), int((chosen != wrong).sum())
    return {"sites": n, "start_is_wrong": int((start == wrong).sum()),
            "right_is_runner_up": int((runner_up == right).sum()), "repaired": repaired, "moved": moved,
            "repair_rate": repaired / n, "repair_interval": wilson(repaired, n),
            "move_rate": moved / n, "move_interval": wilson(moved, n), "chosen": chosen.tolist()}


def run(rewards: dict[str, str], problems: list[task.Problem], learning_rates=LEARNING_RATES, losses=LOSSES,
        max_iters: int = 20, progress: bool = True) -> dict:
    policy = load_policy(POLICY_DIR)
    sites = find_sites(policy.config, policy.params, problems)
    if not sites:
        raise SystemExit("no arithmetic error in the policy's greedy responses on these problems")
    inputs = dto_inputs(policy, sites)
    table = {}
    for name, spec in rewards.items():
        reward = load_reward(spec, policy=policy)
        models = dto_models(policy, reward)
        for lr_name, lr in learning_rates.items():
            for loss_name, coeffs in losses.items():
                if loss_name == "reward off" and name != next(iter(rewards)):
                    table[(name, lr_name, loss_name)] = table[(next(iter(rewards)), lr_name, loss_name)]
                    continue  # the likelihood term alone does not depend on the reward
                start = time.perf_counter()
                config = DTOConfig(max_iters=max_iters, learning_rate=lr, **coeffs)
                table[(name, lr_name, loss_name)] = measure(policy, reward, sites, inputs, config, models)
                if progress:
                    row = table[(name, lr_name, loss_name)]
                    print(f"{name:<11} {lr_name:<9} {loss_name:<12} repaired {row['repair_rate']:.3f} "
                          f"moved {row['move_rate']:.3f} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return {"sites": [{"problem": s.problem.expression, "response": s.response, "offset": s.offset,
                       "wrong": s.wrong, "right": s.right} for s in sites],
            "rows": [{"reward": k[0], "settings": k[1], "loss": k[2], **{f: v for f, v in row.items() if f != "chosen"}}
                     for k, row in table.items()]}


def format_table(result: dict) -> str:
    """The table, headed by what a move lands on by chance: the right token is the policy's runner-up at most
    sites, so a move that is not guided still repairs often; "repaired of moved" is the share to compare with it."""
    first = result["rows"][0]
    lines = [f"{first['sites']} sites (the policy's first arithmetic error in a greedy response; its argmax is the "
             f"wrong token at {first['start_is_wrong']}); the right token is the policy's runner-up at "
             f"{first['right_is_runner_up']} ({100 * first['right_is_runner_up'] / first['sites']:.1f}%).", "",
             "| reward | settings | loss | repaired [95% CI] | moved [95% CI] | repaired of moved |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lo, hi = row["repair_interval"]
        mlo, mhi = row["move_interval"]
        share = f"{row['repaired'] / row['moved']:.2f}" if row["moved"] else "–"
        lines.append(f"| {row['reward']} | {row['settings']} | {row['loss']} | "
                     f"{row['repair_rate']:.3f} [{lo:.3f}, {hi:.3f}] | {row['move_rate']:.3f} [{mlo:.3f}, {mhi:.3f}] | "
                     f"{share} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1000, help="validation problems (default 1000)")
    parser.add_argument("--start", type=int, default=256, help="first validation problem (default 256)")
    parser.add_argument("--reward", action="append", help="NAME=SPEC (repeatable; default: the four testbed rewards)")
    parser.add_argument("--json", help="write the sites and the table to this file")
    parser.add_argument("--markdown", help="write the table to this file")
    parser.add_argument("--from-json", help="only rewrite the table (--markdown) from a JSON this script wrote")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as handle:
            result = json.load(handle)
        table = format_table(result)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as handle:
                handle.write(table + "\n")
        print(table)
        return result
    rewards = {}
    for item in args.reward or DEFAULT_REWARDS:
        name, _, spec = item.partition("=")
        if not spec:
            raise SystemExit(f"--reward {item!r}: expected NAME=SPEC")
        rewards[name] = spec
    problems = task.problems("val", args.problems, start=args.start)
    start = time.perf_counter()
    result = run(rewards, problems)
    result["args"] = vars(args)
    table = format_table(result)
    print(f"{len(result['sites'])} sites (the policy's first arithmetic error, greedy) on validation problems "
          f"{args.start}..{args.start + args.problems - 1}\n")
    print(table)
    print(f"\n{time.perf_counter() - start:.0f} s")
    for path, text in ((args.json, json.dumps(result, indent=1)), (args.markdown, table + "\n")):
        if path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
    return result


if __name__ == "__main__":
    main()
