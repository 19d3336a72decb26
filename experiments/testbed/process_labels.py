"""Process labels on the testbed: exact per-step correctness, the PRM's reward inputs and its evaluation.

A testbed response is one step per line and a final ``#### N`` line. A PRM is read where the library's process
reward reads it with no separator and one step a line (the testbed PRM stores these options): at every newline of
the response (the step that line ends) and at the response's last token (its end-of-turn token: the final step).
Its label at a step is exact, from :attr:`task.Problem.partial_results`: 1 iff that step and every step before it
are the reference's steps (the first wrong step and everything after it are 0; the ``#### N`` line is a step, and
the last step is 1 only for a complete, correct solution). The dense labels (:func:`prefix_labels`) say, at each
character, whether the response so far is a prefix of the reference's text.

Reward inputs are built as the library builds them (:mod:`nabla_jax.rewards.inputs`): the reward template's prefix,
the response, its end-of-turn token, the template's postfix; a test checks the ids and the read slots against it.
The PRM itself is trained by ``experiments/testbed/train_circuit_reward.py``.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.testbed import encoding, evaluation, training
from nabla_jax.models.config import DecoderConfig
from nabla_jax.rewards import readout
from nabla_jax.testbed import task

NEWLINE = "\n"
_STEP_RE = re.compile(r"\s*(\d+)\s*([+-])\s*(\d+)\s*=\s*(-?\d+)\s*")
_ANSWER_RE = re.compile(r"\s*####\s*(-?\d+)\s*")
AGGREGATES = ("min", "last", "prod", "mean")


# ---------------------------------------------------------------- exact step labels


def _line_is_step(p: task.Problem, k: int, line: str) -> bool:
    """Whether ``line`` is the reference's k-th line of ``p`` (compared by value: the k-th step's operation on the
    true running value, or the ``#### answer`` line after the last step)."""
    if k < len(p.ops):
        match = _STEP_RE.fullmatch(line)
        before = p.operands[0] if k == 0 else p.partial_results[k - 1]
        expected = (before, p.ops[k], p.operands[k + 1], p.partial_results[k])
        return bool(match) and (int(match[1]), match[2], int(match[3]), int(match[4])) == expected
    if k == len(p.ops):
        match = _ANSWER_RE.fullmatch(line)
        return bool(match) and int(match[1]) == p.answer
    return False


def step_labels(p: task.Problem, response: str) -> list[int]:
    """One label per step of ``response``, in order: a step per newline (the line it ends) and the final step at the
    response's end (the text after the last newline). A step is 1 iff it and every step before it are the
    reference's; the final step is 1 only when the whole response is the complete correct solution (a trailing
    newline or blank is ignored there)."""
    lines = response.split(NEWLINE)
    labels, good = [], True
    for k, line in enumerate(lines[:-1]):  # the lines a newline ends
        good = good and _line_is_step(p, k, line)
        labels.append(int(good))
    body = response.rstrip().split(NEWLINE)
    complete = len(body) == len(p.ops) + 1 and all(_line_is_step(p, k, line) for k, line in enumerate(body))
    return labels + [int(complete)]


def process_correct(p: task.Problem, response: str) -> bool:
    """The whole response is the reference solution step for step (the last step's label)."""
    return bool(step_labels(p, response)[-1])


# ---------------------------------------------------------------- reward inputs


def reward_template(prompt: str) -> tuple[list[int], list[int]]:
    """(prefix, postfix) ids of the reward template around a response (the chat template with the assistant turn)."""
    head, middle, tail = encoding._template_pieces()
    return [*head, *encoding.text_ids(prompt), *middle], list(tail)


def prm_input(prompt: str, response: str, eos: bool = True) -> tuple[list[int], list[bool]]:
    """``(ids, read)`` of a response's reward input as the library builds it for a PRM read at step-end tokens:
    prefix + response (+ its end-of-turn token, kept as the official rule keeps it) + postfix; ``read`` marks the
    response's newlines and its last token."""
    prefix, postfix = reward_template(prompt)
    body = encoding.text_ids(response) + ([encoding.EOS_ID] if eos else [])
    newline = encoding.text_ids(NEWLINE)[0]
    read = [False] * len(prefix) + [t == newline or i == len(body) - 1 for i, t in enumerate(body)] + [False] * len(postfix)
    return prefix + body + postfix, read


class PRMBatch(NamedTuple):
    ids: np.ndarray  # [N, T] reward ids, right-padded
    valid: np.ndarray  # [N, T]
    read: np.ndarray  # [N, T] the step slots
    label: np.ndarray  # [N, T] float32 step labels at the read slots, prefix labels at the other response tokens
    dense: np.ndarray  # [N, T] the other response tokens (the dense term's slots)
    target: np.ndarray  # [N, T] int32 the reference's token at each response position up to the first mistake
    carry: np.ndarray  # [N, T] the positions with a target (the carried term's slots)


def prefix_labels(p: task.Problem, response: str) -> list[int]:
    """Per character of ``response``: whether the response up to and including it is a prefix of the reference
    solution's text (the dense auxiliary labels)."""
    reference = task.format_solution(p)
    same = 0
    while same < min(len(reference), len(response)) and reference[same] == response[same]:
        same += 1
    return [int(i < same) for i in range(len(response))]


def encode_candidates(problems, candidates: list[list[str]], length: int = encoding.REWARD_LENGTH) -> PRMBatch:
    """Every problem's candidate responses with their exact step labels, as one padded batch (problem-major)."""
    rows, reads, labels, denses, targets = [], [], [], [], []
    for p, texts in zip(problems, candidates):
        prompt = task.format_prompt(p)
        start = len(reward_template(prompt)[0])
        reference = encoding.text_ids(task.format_solution(p)) + [encoding.EOS_ID]
        for text in texts:
            ids, read = prm_input(prompt, text)
            steps = step_labels(p, text)
            if sum(read) != len(steps):
                raise AssertionError(f"{len(steps)} labels for {sum(read)} read slots in {text!r}")
            row_label, dense, it = [0.0] * len(ids), [False] * len(ids), iter(steps)
            for i, good in enumerate(prefix_labels(p, text)):
                row_label[start + i], dense[start + i] = float(good), not read[start + i]
            for i, r in enumerate(read):
                if r:
                    row_label[i] = float(next(it))
            same = sum(prefix_labels(p, text))  # the first mistake's offset (or the response's length)
            rows.append(ids)
            reads.append(read)
            labels.append(row_label)
            denses.append(dense)
            targets.append((start, reference[: min(same + 1, len(reference), len(ids) - start)]))
    ids, valid = encoding.pad_right(rows, max(length, max(len(r) for r in rows)))
    read, dense, carry = (np.zeros(ids.shape, bool) for _ in range(3))
    label, target = np.zeros(ids.shape, np.float32), np.zeros(ids.shape, np.int32)
    for i, (r, lab, d, (start, ref)) in enumerate(zip(reads, labels, denses, targets)):
        read[i, : len(r)], label[i, : len(lab)], dense[i, : len(d)] = r, lab, d
        target[i, start : start + len(ref)], carry[i, start : start + len(ref)] = ref, True
    return PRMBatch(ids, valid, read, label, dense, target, carry)


def step_logits(params: dict, hidden):
    """``[N, T]`` the head's log-odds of label 1 at every slot (the same head :func:`readout.process_probs` reads)."""
    head = params["score"]
    h = jax.nn.relu(jnp.dot(hidden, head["hidden"]["kernel"], preferred_element_type=jnp.float32) + head["hidden"]["bias"])
    logits = jnp.dot(h, head["out"]["kernel"]) + head["out"]["bias"]
    return logits[..., 1] - logits[..., 0]



@functools.partial(jax.jit, static_argnames=("config",))
def step_probs(config: DecoderConfig, params, ids, valid):
    """``[N, T]`` P(label 1) at every slot, through the library's readout."""
    return readout.process_probs(config, params, training._hidden(config, params, ids, valid))


# ---------------------------------------------------------------- evaluation


def aggregate(values: np.ndarray, how: str) -> float:
    """One response's reward from its step probabilities (as :func:`readout.finish`)."""
    if how == "min":
        return float(values.min())
    if how == "last":
        return float(values[-1])
    if how == "prod":
        return float(np.prod(values))
    return float(values.mean())


def score_steps(config, params, problems, responses: list[list[str]], batch_size: int = 512) -> list[list[np.ndarray]]:
    """Each response's step probabilities (problem-major), padded batches of one shape."""
    batch = encode_candidates(problems, responses)
    probs = []
    for start in range(0, len(batch.ids), batch_size):
        ids, valid = batch.ids[start : start + batch_size], batch.valid[start : start + batch_size]
        n = len(ids)
        if n < batch_size and len(batch.ids) > batch_size:
            ids = np.concatenate([ids, np.repeat(ids[-1:], batch_size - n, 0)])
            valid = np.concatenate([valid, np.repeat(valid[-1:], batch_size - n, 0)])
        probs.append(np.asarray(step_probs(config, params, jnp.asarray(ids), jnp.asarray(valid)))[:n])
    probs = np.concatenate(probs)
    flat = [probs[i][batch.read[i]] for i in range(len(probs))]
    k = len(responses[0])
    return [flat[i * k : (i + 1) * k] for i in range(len(problems))]


def evaluate_prm(config, params, problems, responses: list[list[str]]) -> dict:
    """On policy samples ``responses`` (problem-major): per aggregate, AUC against the exact grader, within-problem
    AUC and best-of-k; per-step accuracy at 0.5 against the exact step labels; and the same rankings against
    process correctness (every step right) for ``min``."""
    samples = len(responses[0])
    steps = score_steps(config, params, problems, responses)
    correct = evaluation.grade(problems, responses)
    process = np.array([[process_correct(p, r) for r in row] for p, row in zip(problems, responses)], bool)
    out = {"sample_accuracy": float(correct.mean()), "sample_process_correct": float(process.mean()),
           f"pass_at_{samples}": float(correct.any(1).mean())}
    for how in AGGREGATES:
        scores = np.array([[aggregate(s, how) for s in row] for row in steps])
        out[how] = {
            "auc": evaluation.roc_auc(scores, correct),
            "within_problem_auc": evaluation.within_problem_auc(scores, correct),
            f"best_of_{samples}": evaluation.best_of_n_accuracy(scores, correct, samples),
        }
    labels = np.concatenate([step_labels(p, r) for p, row in zip(problems, responses) for r in row])
    probs = np.concatenate([s for row in steps for s in row])
    out["step_accuracy"] = float(((probs > 0.5) == (labels > 0)).mean())
    out["step_auc"] = evaluation.roc_auc(probs, labels > 0)
    out["steps"] = int(len(labels))
    out["step_positive_share"] = float(labels.mean())
    return out

