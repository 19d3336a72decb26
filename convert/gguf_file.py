"""GGUF (llama.cpp) files to params: dequantise with the ``gguf`` package, undo the Q/K row permutation."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

from convert.errors import CheckpointError
from nabla_jax.models.config import CAUSAL_LM, DecoderConfig, UnsupportedModelError
from nabla_jax.models.decoder import param_shapes

# our layer sub-path -> GGUF tensor name inside ``blk.{i}.``
GGUF_LAYER_NAMES = {
    ("attn", "q_proj", "kernel"): "attn_q.weight",
    ("attn", "k_proj", "kernel"): "attn_k.weight",
    ("attn", "v_proj", "kernel"): "attn_v.weight",
    ("attn", "o_proj", "kernel"): "attn_output.weight",
    ("attn", "q_proj", "bias"): "attn_q.bias",
    ("attn", "k_proj", "bias"): "attn_k.bias",
    ("attn", "v_proj", "bias"): "attn_v.bias",
    ("attn", "q_norm", "scale"): "attn_q_norm.weight",
    ("attn", "k_norm", "scale"): "attn_k_norm.weight",
    ("mlp", "gate_proj", "kernel"): "ffn_gate.weight",
    ("mlp", "up_proj", "kernel"): "ffn_up.weight",
    ("mlp", "down_proj", "kernel"): "ffn_down.weight",
    ("input_norm", "scale"): "attn_norm.weight",
    ("post_attention_norm", "scale"): "ffn_norm.weight",
}
GGUF_TOP_NAMES = {
    ("embed", "embedding"): "token_embd.weight",
    ("final_norm", "scale"): "output_norm.weight",
    ("lm_head", "kernel"): "output.weight",
}


def _field(reader: GGUFReader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None or not field.data:
        return default
    if field.types and field.types[0] == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    if field.types and field.types[0] == GGUFValueType.ARRAY:
        return [field.parts[i] for i in field.data]
    return field.parts[field.data[0]][0].item()


def read_gguf(path: str) -> GGUFReader:
    if not os.path.exists(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        return GGUFReader(path)
    except (ValueError, OSError, IndexError) as err:
        raise CheckpointError(f"{path}: not a readable GGUF file, it may be truncated or corrupt ({err})") from None


def gguf_config(reader: GGUFReader, path: str) -> DecoderConfig:
    arch = _field(reader, "general.architecture")
    if arch not in ("llama", "qwen2", "qwen3"):
        raise UnsupportedModelError(f"{path}: GGUF architecture {arch!r} is not supported (llama, qwen2, qwen3)")
    names = {t.name for t in reader.tensors}

    def need(key):
        value = _field(reader, f"{arch}.{key}")
        if value is None:
            raise UnsupportedModelError(f"{path}: GGUF metadata {arch}.{key} is missing")
        return value

    hidden, heads = int(need("embedding_length")), int(need("attention.head_count"))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    vocab = len(tokens) if tokens is not None else None
    embed_tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
    vocab = vocab or int(embed_tensor.shape[-1])
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    try:
        return _gguf_decoder_config(reader, arch, names, hidden, heads, vocab, eos, need)
    except UnsupportedModelError:
        raise
    except ValueError as err:
        raise UnsupportedModelError(f"{path}: GGUF metadata: {err}") from None


def _gguf_decoder_config(reader, arch, names, hidden, heads, vocab, eos, need) -> DecoderConfig:
    return DecoderConfig(
        family=arch,
        kind=CAUSAL_LM,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(need("feed_forward_length")),
        num_layers=int(need("block_count")),
        num_heads=heads,
        num_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        head_dim=int(_field(reader, f"{arch}.attention.key_length", hidden // heads)),
        rms_norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        max_position_embeddings=int(need("context_length")),
        tie_word_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names,
        qk_norm="blk.0.attn_q_norm.weight" in names,
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_ids=(int(eos),) if eos is not None else (),
    )


def unpermute_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head interleaving of rotary rows: within each head, rows (0, half, 1, half+1, ...)
    were stored as (0, 1, 2, 3, ...). ``weight`` is ``[heads * head_dim, ...]``."""
    head_dim = weight.shape[0] // heads
    return weight.reshape(heads, head_dim // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def load_gguf_params(path: str, dtype=jnp.float32) -> tuple[DecoderConfig, dict]:
    reader = read_gguf(path)
    config = gguf_config(reader, path)
    tensors = {t.name: t for t in reader.tensors}

    def read(name: str) -> np.ndarray:
        tensor = tensors.get(name)
        if tensor is None:
            raise CheckpointError(f"{path}: GGUF file is missing tensor {name!r}")
        return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)

    def layer_tensor(keys, i):
        name = f"blk.{i}.{GGUF_LAYER_NAMES[keys]}"
        weight = read(name)
        # llama.cpp permutes Q/K rows only for the llama architecture
        if config.family == "llama" and keys[:2] in (("attn", "q_proj"), ("attn", "k_proj")):
            weight = unpermute_rows(weight, config.num_heads if keys[1] == "q_proj" else config.num_kv_heads)
        return weight.T if keys[-1] == "kernel" else weight

    shapes = param_shapes(config, jnp.float32)
    params = {}
    for group, sub in shapes.items():
        params[group] = {}
        if group == "layers":
            params[group] = _map_layers(sub, (), lambda keys: np.stack([layer_tensor(keys, i) for i in range(config.num_layers)]))
            continue
        for leaf in sub:
            weight = read(GGUF_TOP_NAMES[(group, leaf)])
            params[group][leaf] = weight.T if leaf == "kernel" else weight
    params = _check_and_cast(params, shapes, dtype, path)
    return config, params


def _map_layers(tree: dict, prefix: tuple, fn) -> dict:
    out = {}
    for key, value in tree.items():
        out[key] = _map_layers(value, prefix + (key,), fn) if isinstance(value, dict) else fn(prefix + (key,))
    return out


def _check_and_cast(params: dict, shapes: dict, dtype, path: str) -> dict:
    import jax

    def cast(keypath, array, shape):
        if tuple(array.shape) != tuple(shape.shape):
            name = "/".join(str(getattr(k, "key", k)) for k in keypath)
            raise CheckpointError(f"{path}: tensor for {name} has shape {array.shape}, expected {shape.shape}")
        return jnp.asarray(array, dtype=dtype)

    return jax.tree_util.tree_map_with_path(cast, params, shapes)


def gguf_tokenizer(path: str):
    """The tokenizer embedded in the GGUF file, through transformers (chat template included)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path))
