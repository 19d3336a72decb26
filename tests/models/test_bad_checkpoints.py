"""Each bad checkpoint gets an error that names the problem."""

import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import nabla_jax
from convert.errors import CheckpointError
from nabla_jax.loading import ModelKindError
from nabla_jax.models.config import UnsupportedModelError


@pytest.fixture
def copy_of(hf_checkpoint, tmp_path):
    def make(name):
        source, _ = hf_checkpoint(name)
        target = tmp_path / name
        shutil.copytree(source, target)
        return str(target)

    return make


def edit_tensors(directory, edit):
    file = os.path.join(directory, "model.safetensors")
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def test_path_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        nabla_jax.load_policy(str(tmp_path / "nowhere"))


def test_unsupported_architecture(copy_of):
    directory = copy_of("llama")
    config_file = os.path.join(directory, "config.json")
    raw = json.load(open(config_file))
    raw["architectures"], raw["model_type"] = ["MistralForCausalLM"], "mistral"
    json.dump(raw, open(config_file, "w"))
    with pytest.raises(UnsupportedModelError, match="unsupported architecture 'MistralForCausalLM'"):
        nabla_jax.load_policy(directory)


def test_unsupported_rope_type(copy_of):
    directory = copy_of("llama")
    config_file = os.path.join(directory, "config.json")
    raw = json.load(open(config_file))
    raw["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0}
    json.dump(raw, open(config_file, "w"))
    with pytest.raises(UnsupportedModelError, match="rope type 'yarn'"):
        nabla_jax.load_policy(directory)


def test_missing_tensor(copy_of):
    directory = copy_of("qwen2")
    edit_tensors(directory, lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'model\.layers\.1\.self_attn\.k_proj\.bias'"):
        nabla_jax.load_policy(directory)


def test_tensor_of_wrong_shape(copy_of):
    directory = copy_of("llama")

    def shrink(tensors):
        tensors["model.layers.0.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"][:-1]

    edit_tensors(directory, shrink)
    with pytest.raises(CheckpointError, match=r"'model\.layers\.0\.mlp\.up_proj\.weight' has shape \(95, 64\), expected \(96, 64\)"):
        nabla_jax.load_policy(directory)


def test_unexpected_tensor(copy_of):
    directory = copy_of("llama")
    edit_tensors(directory, lambda t: t.update({"model.layers.0.extra.weight": np.zeros(3, np.float32)}))
    with pytest.raises(CheckpointError, match="does not use"):
        nabla_jax.load_policy(directory)


@pytest.mark.parametrize("keep_fraction", [0.5, 0.0])
def test_truncated_safetensors(copy_of, keep_fraction):
    directory = copy_of("llama")
    file = os.path.join(directory, "model.safetensors")
    data = open(file, "rb").read()
    open(file, "wb").write(data[: int(len(data) * keep_fraction)])
    with pytest.raises(CheckpointError, match="truncated"):
        nabla_jax.load_policy(directory)


def test_truncated_gguf(tmp_path):
    from nabla_jax.loading import smollm2_gguf_path

    file = tmp_path / "cut.gguf"
    with open(smollm2_gguf_path(), "rb") as source:
        file.write_bytes(source.read(1 << 20))
    with pytest.raises(CheckpointError, match="truncated"):
        nabla_jax.load_policy(str(file))


def test_reward_loaded_as_policy_and_reverse(hf_checkpoint):
    reward_dir, _ = hf_checkpoint("llama_cls")
    policy_dir, _ = hf_checkpoint("llama")
    with pytest.raises(ModelKindError, match="is a reward model .*load_reward"):
        nabla_jax.load_policy(reward_dir)
    with pytest.raises(ModelKindError, match="is a causal LM .*load_policy"):
        nabla_jax.load_reward(policy_dir)


def test_token_id_out_of_range(hf_checkpoint):
    directory, _ = hf_checkpoint("llama")
    with pytest.raises(ValueError, match="out of range"):
        nabla_jax.load_policy(directory).logits([[1, 2, 101]])
