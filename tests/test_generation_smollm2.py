"""Greedy parity with transformers on the real SmolLM2-135M-Instruct (the bundled GGUF), 32 new tokens."""

import pytest
import torch
import transformers

from convert.hf import save_hf_params
from nabla_jax.generation import generate
from nabla_jax.loading import SMOLLM2_NAME, load_policy, smollm2_gguf_path

pytestmark = pytest.mark.slow


def test_smollm2_greedy_matches_transformers(tmp_path):
    try:
        smollm2_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    policy = load_policy(SMOLLM2_NAME)
    # the reference runs on the same dequantised weights, exported to a transformers checkpoint
    save_hf_params(policy.config, policy.params, str(tmp_path / "hf"))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval()
    results = generate(policy, ["What is 2+2?", "Write a haiku about the sea."], max_new_tokens=32, temperature=0.0)
    for result in results:
        with torch.no_grad():
            out = model.generate(torch.tensor([result.prompt_ids]), max_new_tokens=32, do_sample=False)
        assert result.token_ids == out[0, len(result.prompt_ids) :].tolist()
    assert results[0].finish_reason == "eos" and "4" in results[0].text  # ends at <|im_end|> (EOS kept in ids)
    assert results[1].finish_reason == "length" and len(results[1].token_ids) == 32
