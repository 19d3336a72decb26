"""Measurements on the testbed: greedy/sampled accuracy, calibration of next-token probabilities, AUC, best-of-n.

All functions take numpy arrays or plain lists and return plain numbers, so the scripts and tests share them.
Sampling goes through the library's generation (:func:`nabla_jax.generation.queue_rollouts`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments.testbed import encoding, training
from nabla_jax.generation import RolloutSpec, SamplingConfig, queue_rollouts
from nabla_jax.testbed import task

MAX_NEW_TOKENS = encoding.MAX_NEW_TOKENS


def generate(config, params, problems: list[task.Problem], key, temperature: float, samples: int = 1, batch_size: int = 512):
    """Response texts ``[len(problems)][samples]`` (problem-major): at most ``MAX_NEW_TOKENS`` tokens each, ending
    at EOS; temperature 0 is greedy. Response j of the flattened list is sampled with ``fold_in(key, j)``, and up
    to ``batch_size`` rows decode at a time."""
    prompts = [encoding.prompt_ids(task.format_prompt(p)) for p in problems for _ in range(samples)]
    spec = RolloutSpec(MAX_NEW_TOKENS, SamplingConfig(temperature=float(temperature)), (encoding.EOS_ID,), pad_id=encoding.PAD_ID)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(len(prompts), dtype=jnp.uint32))
    outputs = queue_rollouts(config, params, spec, prompts, keys, batch_size)
    texts = [encoding.decode(tokens) for tokens, _ in outputs]
    return [texts[i * samples : (i + 1) * samples] for i in range(len(problems))]


def grade(problems: list[task.Problem], responses: list[list[str]]) -> np.ndarray:
    """``[N, K]`` bool: each response's correctness."""
    return np.array([[task.is_correct(p, r) for r in rows] for p, rows in zip(problems, responses)], bool)


def greedy_accuracy(config, params, problems, batch_size: int = 512) -> float:
    responses = generate(config, params, problems, jax.random.key(0), 0.0, 1, batch_size)
    return float(grade(problems, responses).mean())


def expected_calibration_error(confidence: np.ndarray, hit: np.ndarray, bins: int = 15) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(hit[sel].mean() - confidence[sel].mean())
    return float(total)


def result_digit_mask(problems: list[task.Problem], batch: training.PolicyBatch) -> np.ndarray:
    """``[N, T-1]``: target positions holding a digit of a step result or the final answer (the digits that
    matter: everything else in a solution is copied from the prompt or the previous line)."""
    mask = np.zeros(batch.ids[:, 1:].shape, bool)
    for i, p in enumerate(problems):
        start = len(encoding.prompt_ids(task.format_prompt(p)))
        solution = task.format_solution(p)
        for line_start, line in _line_spans(solution):
            if line.startswith("####"):
                first = line_start + len(task.ANSWER_PREFIX)
            else:
                first = line_start + line.index("=") + 1
            for c in range(first, line_start + len(line)):
                mask[i, start + c - 1] = True  # target ids[start + c] is predicted at position start + c - 1
    return mask


def _line_spans(text: str):
    offset = 0
    for line in text.split("\n"):
        yield offset, line
        offset += len(line) + 1


def calibration(config, params, problems: list[task.Problem], batch_size: int = 256) -> dict:
    """Teacher-forced next-token statistics on reference solutions: ECE, NLL, and max-prob / entropy at all
    assistant tokens and at the result digits."""
    stats = {"lp": [], "max_prob": [], "hit": [], "entropy": [], "target": [], "digits": []}
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        batch = training.policy_examples(chunk)
        lp, max_prob, hit, entropy = training.policy_token_stats(config, params, batch.ids, batch.valid, batch.target)
        for name, value in (("lp", lp), ("max_prob", max_prob), ("hit", hit), ("entropy", entropy)):
            stats[name].append(np.asarray(value).ravel())
        stats["target"].append(batch.target[:, 1:].ravel())
        stats["digits"].append(result_digit_mask(chunk, batch).ravel())
    s = {k: np.concatenate(v) for k, v in stats.items()}
    t, d = s["target"], s["digits"]
    return {
        "ece": expected_calibration_error(s["max_prob"][t], s["hit"][t]),
        "nll_per_token": float(-s["lp"][t].mean()),
        "token_accuracy": float(s["hit"][t].mean()),
        "mean_max_prob": float(s["max_prob"][t].mean()),
        "mean_entropy": float(s["entropy"][t].mean()),
        "digits_ece": expected_calibration_error(s["max_prob"][d], s["hit"][d]),
        "digits_accuracy": float(s["hit"][d].mean()),
        "digits_mean_max_prob": float(s["max_prob"][d].mean()),
        "digits_mean_entropy": float(s["entropy"][d].mean()),
        "digits_share_max_prob_above_0.99": float((s["max_prob"][d] > 0.99).mean()),
    }


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    scores, labels = np.asarray(scores, float).ravel(), np.asarray(labels, bool).ravel()
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    # average ranks of ties
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def within_problem_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUC over (correct, incorrect) pairs of the same problem only: what best-of-n ranking uses."""
    wins = pairs = 0.0
    for s, y in zip(np.asarray(scores), np.asarray(labels, bool)):
        pos, neg = s[y], s[~y]
        if len(pos) and len(neg):
            diff = pos[:, None] - neg[None, :]
            wins += (diff > 0).sum() + 0.5 * (diff == 0).sum()
            pairs += diff.size
    return float(wins / pairs) if pairs else float("nan")


def best_of_n_accuracy(scores: np.ndarray, correct: np.ndarray, n: int) -> float:
    """Accuracy of picking the highest-scoring of the first ``n`` samples of each problem."""
    pick = np.argmax(scores[:, :n], axis=1)
    return float(correct[np.arange(len(correct)), pick].mean())


def majority_vote_accuracy(answers: list[list[int | None]], problems: list[task.Problem], n: int) -> float:
    """Self-consistency: the most frequent extracted answer among the first ``n`` (ties: first seen)."""
    hits = 0
    for p, row in zip(problems, answers):
        counts: dict[int, int] = {}
        for a in row[:n]:
            if a is not None:
                counts[a] = counts.get(a, 0) + 1
        if counts:
            hits += max(counts, key=counts.get) == p.answer
    return hits / len(problems)


def _blocks(array: np.ndarray, n: int) -> list[np.ndarray]:
    """The ``[N, K]`` columns cut into disjoint blocks of ``n`` (estimates at n average over blocks)."""
    return [array[:, i : i + n] for i in range(0, array.shape[1] - n + 1, n)]


def brackets(policy_config, policy_params, scorers: dict, problems: list[task.Problem], samples: int = 64, seed: int = 0, small_n: int = 8) -> dict:
    """The numbers any decoding method on the testbed sits between: floors, greedy, voting, the oracle ceiling (any
    correct sample), and for each verifier in ``scorers`` (name -> ``fn(prompts, responses) -> scores``, texts in,
    one score per response) its best-of-n accuracy and AUC.

    Metrics "@small_n" average over the ``samples // small_n`` disjoint blocks of the samples (less noise than
    using only the first block)."""
    key = jax.random.key(seed)
    greedy = grade(problems, generate(policy_config, policy_params, problems, key, 0.0, 1))[:, 0]
    responses = generate(policy_config, policy_params, problems, jax.random.fold_in(key, 1), 1.0, samples)
    correct = grade(problems, responses)
    answers = [[task.extract_answer(r) for r in row] for row in responses]

    def at(values, n: int, metric) -> float:
        return float(np.mean([metric(s, c, n) for s, c in zip(_blocks(values, n), _blocks(correct, n))]))

    def vote(n: int) -> float:
        return float(np.mean([majority_vote_accuracy([row[i : i + n] for row in answers], problems, n) for i in range(0, samples - n + 1, n)]))

    out = {
        "problems": len(problems),
        "samples": samples,
        "uniform_guess": 1.0 / (task.MAX_VALUE + 1),
        "sample_accuracy": float(correct.mean()),
        "greedy_accuracy": float(greedy.mean()),
        f"majority_vote_{small_n}": vote(small_n),
        f"majority_vote_{samples}": vote(samples),
        f"pass_at_{small_n}": at(correct, small_n, lambda s, c, n: float(c.any(1).mean())),
        f"pass_at_{samples}": float(correct.any(1).mean()),
        "verifiers": {},
    }
    prompts = [task.format_prompt(p) for p in problems for _ in range(samples)]
    for name, scorer in scorers.items():
        scores = np.asarray(scorer(prompts, [r for row in responses for r in row]), np.float64).reshape(len(problems), samples)
        out["verifiers"][name] = {
            f"best_of_{small_n}": at(scores, small_n, best_of_n_accuracy),
            f"best_of_{samples}": best_of_n_accuracy(scores, correct, samples),
            "auc": roc_auc(scores, correct),
            "within_problem_auc": within_problem_auc(scores, correct),
            "reward_correct_mean": float(scores[correct].mean()) if correct.any() else float("nan"),
            "reward_incorrect_mean": float(scores[~correct].mean()) if (~correct).any() else float("nan"),
        }
    return out


def format_brackets(b: dict, small_n: int = 8) -> str:
    """The bracket table as text (accuracy rows with a binomial standard error over problems), one block of rows
    per verifier."""
    n, k = b["problems"], b["samples"]

    def row(name, value, stderr=True):
        err = f" ± {100 * np.sqrt(value * (1 - value) / n):.1f}" if stderr else ""
        return f"| {name:<52} | {100 * value:5.1f}%{err:<7} |"

    lines = [
        f"testbed brackets: {n} test problems, {k} samples each at temperature 1 (@{small_n}: mean over {k // small_n} disjoint blocks)",
        f"| {'':<52} | {'value':<14} |",
        f"|{'-' * 54}|{'-' * 16}|",
        row("random floor: uniform guess in [0, 99]", b["uniform_guess"], False),
        row("random floor: a random sample (sample accuracy, T=1)", b["sample_accuracy"]),
        row("greedy", b["greedy_accuracy"]),
        row(f"majority vote (SC@{small_n})", b[f"majority_vote_{small_n}"]),
        row(f"majority vote (SC@{k})", b[f"majority_vote_{k}"]),
        row(f"oracle pass@{small_n} (any correct among {small_n})", b[f"pass_at_{small_n}"]),
        row(f"oracle pass@{k} (any correct among {k})", b[f"pass_at_{k}"]),
    ]
    for name, v in b["verifiers"].items():
        lines += [
            row(f"{name}: best-of-{small_n}", v[f"best_of_{small_n}"]),
            row(f"{name}: best-of-{k}", v[f"best_of_{k}"]),
            f"| {name + ': AUC, pooled / within problem':<52} | {v['auc']:.3f} / {v['within_problem_auc']:.3f}{'':<1} |",
            f"| {name + ': mean score, correct / incorrect':<52} | {v['reward_correct_mean']:+.2f} / {v['reward_incorrect_mean']:+.2f}{'':<1} |",
        ]
    return "\n".join(lines)
