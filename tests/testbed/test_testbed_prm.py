"""The testbed process reward model: exact step labels, reward inputs built as the library builds them, and the
shipped PRM (nabla_jax/testbed/models/prm, wired from the verifier by experiments/testbed/verifier_circuit.py)
loaded through load_reward: its readout equals the training code's, and its step scores find the first wrong
step (docs/testbed.md)."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.testbed import corrupt, encoding
from experiments.testbed.process_labels import prm_input, process_correct, step_labels, step_probs
from nabla_jax.rewards import inputs, load_reward
from nabla_jax.rewards.loaders import process_kind
from nabla_jax.rewards.scoring import response_step_scores, score_batch
from nabla_jax.templates import reward_input_template, reward_template_ids
from nabla_jax.testbed import PRM_DIR, task

P = task.Problem((92, 48, 12), ("-", "-"))  # 92-48=44, 44-12=32, #### 32


@pytest.mark.parametrize("text, labels", [
    ("92-48=44\n44-12=32\n#### 32", [1, 1, 1]),
    ("92-48=44\n44-12=31\n#### 31", [1, 0, 0]),  # the second step wrong: it and everything after it are 0
    ("92-48=45\n45-12=33\n#### 33", [0, 0, 0]),  # the first wrong, carried on consistently
    ("92-48=44\n45-12=33\n#### 33", [1, 0, 0]),  # a wrong copy of the previous result
    ("92-48=44\n44-12=32\n#### 23", [1, 1, 0]),  # every step right, the answer line wrong
    ("92-48=45\n44-12=32\n#### 32", [0, 0, 0]),  # right final answer after a wrong step: process 0, outcome 1
    ("92-48=44\n44-12=32\n#### 32\n#### 32", [1, 1, 1, 0]),  # a step past the solution
    ("92-48=44\n44-12=32\n#### 32\n", [1, 1, 1, 1]),  # a trailing newline: the end reads the same solution
    ("92-48=44\n44-12=32", [1, 0]),  # no answer line: the end is not a complete solution
    ("92 - 48 = 44\n44-12=32\n#### 32", [1, 1, 1]),  # steps are compared by value
    ("", [0]),
])
def test_step_labels_mark_the_first_error_and_everything_after(text, labels):
    assert step_labels(P, text) == labels
    assert process_correct(P, text) == bool(labels[-1])


def test_process_and_outcome_labels_differ_where_they_should():
    lucky = "92-48=45\n44-12=32\n#### 32"
    assert task.is_correct(P, lucky) and not process_correct(P, lucky)


@pytest.mark.parametrize("eos", [True, False])
def test_training_inputs_are_the_library_reward_inputs(eos):
    tok = encoding.tokenizer()
    kind = process_kind(tok, len(tok), "min", separator=None, step_split="\n")
    rng = np.random.default_rng(0)
    for p in task.problems("test", 4):
        prompt = task.format_prompt(p)
        prefix, postfix = reward_template_ids(tok, prompt)
        for text in [task.format_solution(p), corrupt.corrupt_solution(p, rng, "slip"), "12\n"]:
            ids, read = prm_input(prompt, text, eos)
            response = encoding.text_ids(text) + ([encoding.EOS_ID] if eos else [])
            built = inputs.reward_input(kind, jnp.asarray(prefix), len(prefix), jnp.asarray(response), len(response),
                                        jnp.asarray(postfix), len(postfix), 0)
            n = int(built.length)
            assert np.asarray(built.ids[:n]).tolist() == ids
            assert np.asarray(built.counted[:n]).tolist() == read
            assert sum(read) == len(step_labels(p, text)) or not eos


@pytest.fixture(scope="module")
def prm():
    return load_reward(PRM_DIR)  # its reading options (no separator, a step a line, min) are its own


def _steps(prm, p, text):
    prefix, postfix = reward_input_template(prm, task.format_prompt(p))
    return np.asarray(response_step_scores(prm, prefix, encoding.text_ids(text) + [encoding.EOS_ID], postfix))


def test_shipped_prm_files():
    names = set(os.listdir(PRM_DIR))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json"} <= names
    assert sum(os.path.getsize(os.path.join(PRM_DIR, n)) for n in names) < 2_000_000
    with open(os.path.join(PRM_DIR, "config.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    assert raw["architectures"] == ["Qwen2ForProcessRewardModel"] and raw["pad_token_id"] == 0


def test_shipped_prm_loads_as_a_process_reward(prm):
    assert prm.config.is_process_reward and prm.kind.name == "process" and prm.kind.separator_id is None
    assert prm.kind.step_end_ids == tuple(encoding.text_ids("\n"))
    # the training readout and the library's agree on the shipped weights
    p = task.problem("test", 0)
    ids, read = prm_input(task.format_prompt(p), task.format_solution(p))
    ours = np.asarray(step_probs(prm.config, prm.params, jnp.asarray([ids]), jnp.asarray([[True] * len(ids)])))[0]
    assert np.allclose(ours[np.asarray(read)], _steps(prm, p, task.format_solution(p)), atol=1e-5)


def test_shipped_prm_step_scores_on_references_and_planted_mistakes(prm):
    """What the shipped PRM does: every step of a reference scores high, the first step under 0.5 of a corrupted
    solution is its planted mistake in nearly every case, and the steps from the mistake on score far under those
    before it. A randomly initialised or mis-read head fails these."""
    rng = np.random.default_rng(1)
    problems = task.problems("test", 12)
    before, after, rows, mins, found = [], [], [], [], []
    for p in problems:
        reference = _steps(prm, p, task.format_solution(p))
        assert len(reference) == len(p.ops) + 1 and reference.min() > 0.5
        wrong = corrupt.corrupt_solution(p, rng, "slip")
        first = int(np.argmin(step_labels(p, wrong)))  # the planted mistake's step
        scores = _steps(prm, p, wrong)
        assert scores[-1] < 0.5
        found.append(int(np.argmax(scores < 0.5)) == first)
        before += list(scores[:first])
        after += list(scores[first:])
        prefix, postfix = reward_input_template(prm, task.format_prompt(p))
        rows += [(prefix, encoding.text_ids(text) + [encoding.EOS_ID], postfix) for text in (task.format_solution(p), wrong)]
        mins.append([reference.min(), scores.min()])
    assert np.mean(before) > np.mean(after) + 0.5 and np.mean(found) >= 0.9
    rewards = score_batch(prm, rows, pad=0).reshape(len(problems), 2)  # aggregated by min, as in the sweeps
    assert np.allclose(rewards, mins, atol=1e-5)
