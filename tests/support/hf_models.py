"""Small random transformers models saved the way a user's checkpoint is, for parity tests (torch is the reference)."""

from __future__ import annotations

import os

import torch
import transformers

from nabla_jax.char_tokenizer import build_char_tokenizer

VOCAB = len(build_char_tokenizer())  # 101: the char tokenizer's size, so text and ids agree
BASE = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    initializer_range=0.2,  # large enough that logits span several units, so parity errors are visible
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}

# name -> (transformers class, config class, config overrides)
SPECS = {
    "llama": ("LlamaForCausalLM", "LlamaConfig", {}),
    "llama_tied": ("LlamaForCausalLM", "LlamaConfig", {"tie_word_embeddings": True}),
    "llama3_rope": ("LlamaForCausalLM", "LlamaConfig", {"rope_parameters": LLAMA3_ROPE}),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", {}),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3Config", {"head_dim": 24}),
    "llama_cls": ("LlamaForSequenceClassification", "LlamaConfig", {"num_labels": 1}),
    "qwen2_cls": ("Qwen2ForSequenceClassification", "Qwen2Config", {"num_labels": 1}),
    "qwen3_cls": ("Qwen3ForSequenceClassification", "Qwen3Config", {"num_labels": 1, "head_dim": 24}),
}
CAUSAL_SPECS = [name for name in SPECS if not name.endswith("_cls")]
CLASSIFIER_SPECS = [name for name in SPECS if name.endswith("_cls")]


def make_torch_model(name: str, seed: int = 0, **overrides):
    model_class, config_class, spec_overrides = SPECS[name]
    config = getattr(transformers, config_class)(**{**BASE, **spec_overrides, **overrides})
    torch.manual_seed(seed)
    return getattr(transformers, model_class)(config).eval()


def save_torch_model(model, directory: str, max_shard_size=None, with_tokenizer: bool = True) -> str:
    os.makedirs(directory, exist_ok=True)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    if with_tokenizer:
        build_char_tokenizer().save_pretrained(directory)
    return directory
