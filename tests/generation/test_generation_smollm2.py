"""Greedy parity with transformers on the real SmolLM2-135M-Instruct (the bundled GGUF), 32 new tokens."""

import pytest
import torch
import transformers

from convert.hf import save_hf_params
from nabla_jax.generation import generate
from nabla_jax.loading import SMOLLM2_NAME, load_policy, smollm2_gguf_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_pair(tmp_path_factory):
    """Our SmolLM2 and transformers on the same dequantised weights, exported to a transformers checkpoint."""
    try:
        smollm2_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    policy = load_policy(SMOLLM2_NAME)
    directory = str(tmp_path_factory.mktemp("smollm2") / "hf")
    save_hf_params(policy.config, policy.params, directory)
    return policy, transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def test_smollm2_greedy_matches_transformers(smollm2_pair):
    policy, model = smollm2_pair
    results = generate(policy, ["What is 2+2?", "Write a haiku about the sea."], max_new_tokens=32, temperature=0.0)
    for result in results:
        with torch.no_grad():
            out = model.generate(torch.tensor([result.prompt_ids]), max_new_tokens=32, do_sample=False)
        assert result.token_ids == out[0, len(result.prompt_ids) :].tolist()
    assert results[0].finish_reason == "eos" and "4" in results[0].text  # ends at <|im_end|> (EOS kept in ids)
    assert results[1].finish_reason == "length" and len(results[1].token_ids) == 32


def test_smollm2_greedy_with_repetition_penalty_matches_transformers(smollm2_pair):
    """The repetition penalty has transformers' (and vLLM's) semantics: it changes the greedy path exactly as
    ``generate(repetition_penalty=...)`` does, token for token."""
    policy, model = smollm2_pair
    prompt = "Write a haiku about the sea."
    result = generate(policy, [prompt], max_new_tokens=32, temperature=0.0, repetition_penalty=1.3)[0]
    ids = torch.tensor([result.prompt_ids])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=32, do_sample=False, repetition_penalty=1.3)
        plain = model.generate(ids, max_new_tokens=32, do_sample=False)  # ours equals it: the test above
    assert result.token_ids == out[0, len(result.prompt_ids) :].tolist()
    assert result.token_ids != plain[0, len(result.prompt_ids) :].tolist()  # the penalty changed the output
