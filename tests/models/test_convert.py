"""Orbax round trip, export back to Hugging Face, the convert command, and the GGUF row permutation."""

import os

import jax
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

import nabla_jax
from convert.gguf_file import unpermute_rows
from nabla_jax.cli import main as cli_main
from tests.models.test_model_parity import padded_batch, torch_outputs


def leaves_identical(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    return [p for p, _ in la] == [p for p, _ in lb] and all(
        x.dtype == y.dtype and x.shape == y.shape and bool((np.asarray(x) == np.asarray(y)).all())
        for (_, x), (_, y) in zip(la, lb)
    )


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_orbax_round_trip_is_bit_identical(hf_checkpoint, tmp_path, dtype):
    directory, _ = hf_checkpoint("qwen3")
    policy = nabla_jax.load_policy(directory, dtype=dtype)
    out = tmp_path / "orbax"
    assert cli_main(["convert", directory, str(out)] + (["--dtype", dtype] if dtype else [])) == 0
    again = nabla_jax.load_policy(str(out))
    assert leaves_identical(policy.params, again.params)
    assert again.config == policy.config
    assert again.tokenizer is not None and again.tokenizer.chat_template == policy.tokenizer.chat_template


@pytest.mark.parametrize("name", ["llama3_rope", "qwen2_cls"])
def test_hf_export_loads_in_transformers_with_same_outputs(hf_checkpoint, tmp_path, name):
    directory, _ = hf_checkpoint(name)
    is_cls = name.endswith("_cls")
    model = (nabla_jax.load_reward if is_cls else nabla_jax.load_policy)(directory)
    out = str(tmp_path / "hf")
    assert cli_main(["convert", directory, out, "--to", "hf", "--max-shard-mb", "0.05"]) == 0
    assert os.path.exists(os.path.join(out, "model.safetensors.index.json"))  # sharded export
    auto = AutoModelForSequenceClassification if is_cls else AutoModelForCausalLM
    reloaded = auto.from_pretrained(out, dtype=torch.float32).eval()
    ids, mask, positions = padded_batch(7, model.config.vocab_size)
    ref = torch_outputs(reloaded, ids, mask, positions)
    if is_cls:
        assert np.abs(np.asarray(model.score(ids, mask)) - ref[:, 0]).max() <= 1e-4
    else:
        assert np.abs(np.asarray(model.logits(ids, mask)) - ref)[mask].max() <= 1e-4
    assert AutoTokenizer.from_pretrained(out).chat_template == model.tokenizer.chat_template


def test_export_of_trained_params_round_trips(tmp_path):
    """Params made here (not read from transformers) export to a directory transformers and we agree on."""
    from convert.hf import save_hf_params
    from nabla_jax.char_tokenizer import build_char_tokenizer
    from nabla_jax.models.config import config_from_dict
    from nabla_jax.models.decoder import init_params

    raw = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 101, "hidden_size": 32,
        "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
        "max_position_embeddings": 64, "tie_word_embeddings": True,
    }
    config = config_from_dict(raw)
    params = init_params(config, jax.random.key(3))
    out = str(tmp_path / "made_here")
    save_hf_params(config, params, out, tokenizer=build_char_tokenizer())
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ours = nabla_jax.load_policy(out)
    assert leaves_identical(params, ours.params)
    ids, mask, positions = padded_batch(8, 101)
    assert np.abs(np.asarray(ours.logits(ids, mask)) - torch_outputs(reloaded, ids, mask, positions))[mask].max() <= 1e-4


def test_convert_refuses_to_overwrite_foreign_directory(hf_checkpoint, tmp_path):
    directory, _ = hf_checkpoint("llama")
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert cli_main(["convert", directory, str(target)]) == 2
    assert (target / "notes.txt").read_text() == "keep me" and len(os.listdir(target)) == 1


def test_gguf_row_unpermutation_inverts_llama_cpp_layout():
    """llama.cpp stores each head's rotary rows interleaved (0, h, 1, h+1, ...); unpermute restores halves."""
    heads, head_dim, cols = 3, 8, 5
    weight = np.arange(heads * head_dim * cols, dtype=np.float32).reshape(heads * head_dim, cols)
    half = head_dim // 2
    stored = np.empty_like(weight)
    for h in range(heads):
        for i in range(half):  # interleave by construction, written out independently of the implementation
            stored[h * head_dim + 2 * i] = weight[h * head_dim + i]
            stored[h * head_dim + 2 * i + 1] = weight[h * head_dim + half + i]
    np.testing.assert_array_equal(unpermute_rows(stored, heads), weight)
    assert not np.array_equal(unpermute_rows(stored, 1), weight)  # the head count matters


def test_saved_char_tokenizer_loads_as_saved_next_to_a_qwen_config(hf_checkpoint):
    """transformers' AutoTokenizer picks Qwen2Tokenizer from config.json, which would drop spaces and newlines."""
    directory, _ = hf_checkpoint("qwen2")
    tokenizer = nabla_jax.load_policy(directory).tokenizer
    assert tokenizer.tokenize("a b\nc") == ["a", " ", "b", "\n", "c"]
