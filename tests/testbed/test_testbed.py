"""The testbed: task determinism and split disjointness, answer extraction, template ids, corruptions, and the
shipped checkpoints (transformers and our loader agree on them)."""

import json
import os
import re

import numpy as np
import pytest

from experiments.testbed import corrupt, encoding, evaluation
from nabla_jax import testbed
from nabla_jax.testbed import task


def test_problems_are_a_pure_function_of_split_and_index():
    first = [task.format_prompt(p) + task.format_solution(p) for p in task.problems("test", 50)]
    again = [task.format_prompt(task.problem("test", i)) + task.format_solution(task.problem("test", i)) for i in range(50)]
    assert first == again
    assert task.problem("train", 0) != task.problem("test", 0)
    # pinned values: a change of the generator changes the shipped test set, which must be deliberate
    assert task.format_prompt(task.problem("test", 0)) == "what is 92-48-12?"
    assert task.format_solution(task.problem("test", 0)) == "92-48=44\n44-12=32\n#### 32"


def test_splits_are_disjoint_and_solutions_are_exact():
    by_split = {split: {p.expression for p in task.problems(split, 1500)} for split in ("train", "val", "test")}
    assert not by_split["train"] & by_split["test"]
    assert not by_split["train"] & by_split["val"]
    assert not by_split["val"] & by_split["test"]
    for split, expressions in by_split.items():
        assert all(task.split_of(e) == split for e in expressions)
    for p in task.problems("train", 300):
        assert eval(p.expression) == p.answer  # noqa: S307 - digits and +/- only
        assert all(0 <= v <= task.MAX_VALUE for v in p.partial_results)
        assert 20 <= len(task.format_solution(p)) <= 40
        assert task.parse_prompt(task.format_prompt(p)) == p
        assert task.is_correct(p, task.format_solution(p))


def test_shipped_test_jsonl_matches_the_generator():
    with open(testbed.TEST_JSONL, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) == 500 and {tuple(sorted(r)) for r in rows} == {("answer", "id", "problem")}
    expected = task.distinct_problems("test", 500)
    assert [r["problem"] for r in rows] == [task.format_prompt(p) for _, p in expected]
    assert [r["answer"] for r in rows] == [str(p.answer) for _, p in expected]
    assert len({r["problem"] for r in rows}) == 500


@pytest.mark.parametrize(
    "text, answer",
    [
        ("12+3=15\n#### 15", 15),
        ("#### 7", 7),
        ("12+3=15\n####15\n", 15),
        ("12+3=15\n#### 15 and more", None),
        ("12+3=15", None),  # no answer line: no last-number guess
        ("#### 4\n#### 5", 5),
        ("", None),
        ("#### -3", -3),
    ],
)
def test_extract_answer(text, answer):
    assert task.extract_answer(text) == answer


def test_corruptions_are_wrong_answers_in_range():
    rng = np.random.default_rng(0)
    for p in task.problems("train", 200):
        reference = task.format_solution(p).split("\n")
        for kind in corrupt.KINDS:
            wrong = corrupt.corrupt_solution(p, rng, kind)
            assert not task.is_correct(p, wrong)
            lines = wrong.split("\n")
            assert len(lines) == len(reference) and lines[-1].startswith(task.ANSWER_PREFIX)
            values = [int(v) for v in re.findall(r"\d+", wrong)]
            assert all(0 <= v <= task.MAX_VALUE for v in values)
            first_diff = next(i for i, (a, b) in enumerate(zip(lines, reference)) if a != b)
            if kind == "answer":
                assert first_diff == len(lines) - 1  # only the final line differs
            else:
                assert first_diff < len(lines) - 1
            if kind == "copy":  # the first wrong line starts with a wrongly copied value; its own step is right
                a, op, b, result = re.fullmatch(r"(\d+)([+-])(\d+)=(\d+)", lines[first_diff]).groups()
                assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(result)
    with pytest.raises(ValueError, match="kind must be one of"):
        corrupt.corrupt_solution(task.problem("train", 0), rng, "typo")


def test_template_ids_equal_the_tokenizer_chat_template():
    tok = encoding.tokenizer()
    p = task.problem("test", 3)
    prompt, response = task.format_prompt(p), task.format_solution(p)
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    assert encoding.prompt_ids(prompt) == tok.encode(text, add_special_tokens=False)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text.endswith(response + "<|im_end|>\n")
    assert encoding.reward_ids(prompt, response) == tok.encode(text, add_special_tokens=False)
    assert encoding.decode(encoding.text_ids(response) + [encoding.EOS_ID, 5]) == response


def test_auc_and_best_of_n_helpers():
    assert evaluation.roc_auc(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0])) == 1.0
    assert evaluation.roc_auc(np.array([1.0, 1.0]), np.array([1, 0])) == 0.5
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.1]])
    correct = np.array([[True, False, False], [True, False, True]])
    assert evaluation.best_of_n_accuracy(scores, correct, 3) == 0.5
    assert evaluation.within_problem_auc(scores, correct) == pytest.approx(1 / 4)  # pairs: 0/2 and 1/2
    assert evaluation.expected_calibration_error(np.array([0.9, 0.9]), np.array([True, False])) == pytest.approx(0.4)


# ---------------------------------------------------------------- the shipped checkpoints


def _inputs(tokenizer_rows):
    """Right-padded ids/mask numpy arrays for a few reward/policy inputs of different lengths."""
    return encoding.pad_right(tokenizer_rows)


@pytest.fixture(scope="module")
def shipped_rows():
    rows = []
    for i, p in enumerate(task.problems("test", 4)):
        solution = task.format_solution(p) if i % 2 else corrupt.corrupt_solution(p, np.random.default_rng(i))
        rows.append(encoding.reward_ids(task.format_prompt(p), solution))
    rows[1] = rows[1][:-9]  # rows of different lengths, so padding is exercised
    return rows


@pytest.mark.parametrize("which", ["policy", "reward"])
def test_shipped_checkpoint_files(which):
    directory = testbed.POLICY_DIR if which == "policy" else testbed.REWARD_DIR
    names = set(os.listdir(directory))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert sum(os.path.getsize(os.path.join(directory, n)) for n in names) < 5_000_000
    with open(os.path.join(directory, "config.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    expected = "LlamaForCausalLM" if which == "policy" else "LlamaForSequenceClassification"
    assert raw["architectures"] == [expected]
    assert raw["pad_token_id"] == 0 and raw["eos_token_id"] == 2 and raw["vocab_size"] == len(encoding.tokenizer())
    if which == "reward":
        assert raw["num_labels"] == 1


def test_shipped_policy_logits_match_transformers(shipped_rows):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import nabla_jax

    policy = nabla_jax.load_policy(testbed.POLICY_DIR)
    ids, mask = _inputs(shipped_rows)
    ours = np.asarray(policy.logits(ids, mask))
    model = AutoModelForCausalLM.from_pretrained(testbed.POLICY_DIR, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long)).logits.numpy()
    # float32 agreement: 1e-4 absolute, or 1e-5 of the logit scale (the trained logits reach ~30)
    assert np.abs(ours - theirs)[mask].max() <= max(1e-4, 1e-5 * np.abs(theirs[mask]).max())
    tokenizer = AutoTokenizer.from_pretrained(testbed.POLICY_DIR)
    assert tokenizer.get_vocab() == encoding.tokenizer().get_vocab()
    assert tokenizer.chat_template == encoding.tokenizer().chat_template
    assert policy.tokenizer.eos_token_id == 2


def test_shipped_reward_scores_match_transformers(shipped_rows):
    import torch
    from transformers import AutoModelForSequenceClassification

    import nabla_jax

    reward = nabla_jax.load_reward(testbed.REWARD_DIR)
    ids, mask = _inputs(shipped_rows)
    ours = np.asarray(reward.score(ids, mask))
    model = AutoModelForSequenceClassification.from_pretrained(testbed.REWARD_DIR, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long)).logits[:, 0].numpy()
    assert np.abs(ours - theirs).max() <= max(1e-4, 1e-5 * np.abs(theirs).max())
    assert len(set(np.round(ours, 3))) > 1  # a real head, not a constant
    assert set(reward.params) == {"embed", "layers", "final_norm", "score"}
