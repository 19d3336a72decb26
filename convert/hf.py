"""Hugging Face checkpoint directories (config.json + single or sharded safetensors) to params, and back."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from convert.errors import CheckpointError
from convert.names import IGNORED_SUFFIXES, TensorSlot, tensor_slots
from convert.staging import staged_directory
from nabla_jax.models.config import DecoderConfig, config_to_dict, load_config
from nabla_jax.models.decoder import param_shapes

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def _weight_map(directory: str) -> dict[str, str]:
    """tensor name -> safetensors file path."""
    index = os.path.join(directory, INDEX_FILE)
    if os.path.exists(index):
        with open(index, encoding="utf-8") as handle:
            try:
                mapping = json.load(handle)["weight_map"]
            except (json.JSONDecodeError, KeyError) as err:
                raise CheckpointError(f"{index}: not a valid safetensors index ({err})") from None
        return {name: os.path.join(directory, file) for name, file in mapping.items()}
    single = os.path.join(directory, SINGLE_FILE)
    if not os.path.exists(single):
        raise CheckpointError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}")
    return {name: single for name in _tensor_names(single)}


def _tensor_names(file: str) -> list[str]:
    try:
        with safe_open(file, framework="flax") as handle:
            return list(handle.keys())
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{file}: cannot read safetensors header, the file may be truncated or corrupt ({err})") from None


class _TensorReader:
    """Reads tensors by name from a set of safetensors files, keeping each file open once."""

    def __init__(self, weight_map: dict[str, str]):
        self.weight_map = weight_map
        self.handles = {}

    def read(self, name: str) -> np.ndarray:
        file = self.weight_map.get(name)
        if file is None:
            raise CheckpointError(f"checkpoint is missing tensor {name!r}")
        if file not in self.handles:
            if not os.path.exists(file):
                raise CheckpointError(f"shard {file} listed in the index does not exist")
            try:
                self.handles[file] = safe_open(file, framework="flax").__enter__()
            except (SafetensorError, OSError) as err:
                raise CheckpointError(f"{file}: cannot open safetensors file ({err})") from None
        try:
            return np.asarray(self.handles[file].get_tensor(name))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{file}: cannot read tensor {name!r}, the file may be truncated ({err})") from None


def load_hf_params(directory: str, config: DecoderConfig | None = None, dtype=None) -> tuple[DecoderConfig, dict]:
    """Load ``directory`` into ``(config, params)``; ``dtype`` None keeps the stored dtype."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    config = config or load_config(directory)
    weight_map = _weight_map(directory)
    reader = _TensorReader(weight_map)
    stored_dtype = None
    shapes = param_shapes(config, jnp.float32)
    leaves: dict[tuple, list] = defaultdict(list)
    used = set()
    for slot in tensor_slots(config, shapes):
        tensor = reader.read(slot.name)
        stored_dtype = stored_dtype or tensor.dtype
        if slot.transpose:
            tensor = tensor.T
        expected = _expected_shape(shapes, slot)
        if tensor.shape != expected:
            raise CheckpointError(
                f"tensor {slot.name!r} has shape {tuple(tensor.T.shape if slot.transpose else tensor.shape)}, "
                f"expected {tuple(reversed(expected)) if slot.transpose else expected} from config.json"
            )
        leaves[slot.path].append(tensor)
        used.add(slot.name)
    unexpected = [
        name
        for name in weight_map
        if name not in used and not name.endswith(IGNORED_SUFFIXES) and not _tied_head(config, name)
    ]
    if unexpected:
        raise CheckpointError(
            f"{directory}: checkpoint has tensors the {config.architecture} config does not use, e.g. {unexpected[:3]}"
        )
    target = jnp.dtype(dtype) if dtype is not None else jnp.dtype(stored_dtype)

    def build(path, _):
        parts = leaves[_path_keys(path)]
        array = np.stack(parts) if _path_keys(path)[0] == "layers" else parts[0]
        return jnp.asarray(array, dtype=target)

    params = jax.tree_util.tree_map_with_path(build, shapes)
    return config, params


def _tied_head(config: DecoderConfig, name: str) -> bool:
    return config.tie_word_embeddings and name == "lm_head.weight"


def _path_keys(path) -> tuple[str, ...]:
    return tuple(entry.key for entry in path)


def _expected_shape(shapes: dict, slot: TensorSlot) -> tuple[int, ...]:
    leaf = shapes
    for key in slot.path:
        leaf = leaf[key]
    return tuple(leaf.shape[1:]) if slot.layer is not None else tuple(leaf.shape)


def save_hf_params(
    config: DecoderConfig, params: dict, directory: str, max_shard_bytes: int | None = None, tokenizer=None
) -> None:
    """Write ``config.json``, safetensors (sharded with an index past ``max_shard_bytes``) and the tokenizer.

    Refuses to write into a non-empty directory, so nothing already there is overwritten. Everything is written to
    a temporary sibling and renamed into place, so a killed export leaves no partial checkpoint behind."""
    if os.path.isdir(directory) and os.listdir(directory):
        raise FileExistsError(f"{directory} exists and is not empty; refusing to overwrite it")
    tensors = _hf_tensors(config, params)
    with staged_directory(directory) as staging:
        _write_safetensors(tensors, staging, max_shard_bytes)
        raw = config_to_dict(config)
        raw["torch_dtype"] = raw["dtype"] = str(next(iter(tensors.values())).dtype)
        with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as handle:
            json.dump(raw, handle, indent=2)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)


def _hf_tensors(config: DecoderConfig, params: dict) -> dict[str, np.ndarray]:
    tensors = {}
    for slot in tensor_slots(config, params):
        leaf = params
        for key in slot.path:
            leaf = leaf[key]
        array = np.asarray(leaf[slot.layer] if slot.layer is not None else leaf)
        tensors[slot.name] = np.ascontiguousarray(array.T if slot.transpose else array)
    return tensors


def _write_safetensors(tensors: dict, directory: str, max_shard_bytes: int | None) -> None:
    shards = _split_shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        _save(shards[0], os.path.join(directory, SINGLE_FILE))
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _save(shard, os.path.join(directory, file))
        weight_map.update({name: file for name in shard})
    total = sum(t.nbytes for t in tensors.values())
    with open(os.path.join(directory, INDEX_FILE), "w", encoding="utf-8") as handle:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, handle, indent=2)


def _save(tensors: dict, file: str) -> None:
    # safetensors' numpy writer has no bfloat16; store through jax arrays with their ml_dtypes dtype
    from safetensors.flax import save_file as save_flax

    if any(t.dtype == jnp.bfloat16 for t in tensors.values()):
        save_flax({k: jnp.asarray(v) for k, v in tensors.items()}, file, metadata={"format": "pt"})
    else:
        save_file(tensors, file, metadata={"format": "pt"})


def _split_shards(tensors: dict, max_shard_bytes: int | None) -> list[dict]:
    if not max_shard_bytes:
        return [tensors]
    shards, current, size = [], {}, 0
    for name, tensor in tensors.items():
        if current and size + tensor.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += tensor.nbytes
    shards.append(current)
    return shards
