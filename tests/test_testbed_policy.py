"""The shipped testbed policy: it loads through transformers and our loader with the same logits, and its task's
answers are graded exactly."""

import numpy as np
import torch
from transformers import AutoModelForCausalLM

import nabla_jax
from nabla_jax.evaluation.grading import get_grader
from nabla_jax.testbed import POLICY_DIR
from nabla_jax.testbed.task import extract_answer


def test_shipped_policy_matches_transformers():
    policy = nabla_jax.load_policy(POLICY_DIR)
    reference = AutoModelForCausalLM.from_pretrained(POLICY_DIR, dtype=torch.float32).eval()
    ids = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": "what is 92-48-12?"}], add_generation_prompt=True, return_dict=False
    )
    ids = np.asarray(ids + policy.tokenizer.encode("92-48=44\n44-12=32\n#### 32", add_special_tokens=False))[None]
    with torch.no_grad():
        ref = reference(torch.tensor(ids)).logits.numpy()
    # float32 agreement: 1e-4 absolute, or 1e-5 of the logit scale (the trained logits reach ~30)
    assert np.abs(np.asarray(policy.logits(ids)) - ref).max() <= max(1e-4, 1e-5 * np.abs(ref).max())


def test_testbed_grader_is_strict_and_exact():
    grader = get_grader("testbed")
    assert grader.grade("92-48=44\n44-12=32\n#### 32", "32") == ("32", True)
    assert grader.grade("#### 31", "32") == ("31", False)
    assert grader.grade("the answer is 32", "32") == (None, False)  # no final "#### N" line: no answer
    assert extract_answer("#### -5") == -5
