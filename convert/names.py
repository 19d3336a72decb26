"""The map between our params tree and Hugging Face tensor names. Only ``convert/`` knows these names."""

from __future__ import annotations

from typing import Iterator, NamedTuple

import jax

from nabla_jax.models.config import DecoderConfig

# our layer sub-path -> Hugging Face name inside ``model.layers.{i}.``
LAYER_NAMES = {
    ("attn", "q_proj"): "self_attn.q_proj",
    ("attn", "k_proj"): "self_attn.k_proj",
    ("attn", "v_proj"): "self_attn.v_proj",
    ("attn", "o_proj"): "self_attn.o_proj",
    ("attn", "q_norm"): "self_attn.q_norm",
    ("attn", "k_norm"): "self_attn.k_norm",
    ("mlp", "gate_proj"): "mlp.gate_proj",
    ("mlp", "up_proj"): "mlp.up_proj",
    ("mlp", "down_proj"): "mlp.down_proj",
    ("input_norm",): "input_layernorm",
    ("post_attention_norm",): "post_attention_layernorm",
}
TOP_NAMES = {
    ("embed",): "model.embed_tokens",
    ("final_norm",): "model.norm",
    ("lm_head",): "lm_head",
    ("score",): "score",
    ("score", "hidden"): "score.0",  # a process reward model's two-layer head
    ("score", "out"): "score.2",
}
LEAF_SUFFIX = {"kernel": "weight", "embedding": "weight", "scale": "weight", "bias": "bias"}
# tensors some checkpoints carry that the model does not use
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class TensorSlot(NamedTuple):
    """One checkpoint tensor and where it goes: ``path`` in our tree, ``layer`` index (None for top level)."""

    name: str
    path: tuple[str, ...]
    layer: int | None
    transpose: bool


def _key_names(path) -> tuple[str, ...]:
    return tuple(getattr(entry, "key", getattr(entry, "name", None)) for entry in path)


def tensor_slots(config: DecoderConfig, shapes: dict) -> Iterator[TensorSlot]:
    """Every checkpoint tensor the params tree ``shapes`` needs, in a fixed order."""
    for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        keys = _key_names(path)
        leaf = keys[-1]
        transpose = leaf == "kernel"
        if keys[0] == "layers":
            base = LAYER_NAMES[keys[1:-1]]
            for i in range(config.num_layers):
                yield TensorSlot(f"model.layers.{i}.{base}.{LEAF_SUFFIX[leaf]}", keys, i, transpose)
        else:
            yield TensorSlot(f"{TOP_NAMES[keys[:-1]]}.{LEAF_SUFFIX[leaf]}", keys, None, transpose)
