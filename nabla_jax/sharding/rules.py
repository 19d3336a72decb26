"""Sharding rules for the decoder's params: each leaf's logical axes, and the mesh axis each logical axis maps to.

A leaf's dimension is split over its mesh axis only when it divides evenly (for head axes: when the number of
heads does, so a shard holds whole heads); otherwise that dimension is replicated, so any model runs on any mesh.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, PartitionSpec

from nabla_jax.models.config import DecoderConfig

# (module, leaf) -> logical axes; leaves under "layers" get a leading "layers" axis (the scan over depth)
LOGICAL_AXES = {
    ("embed", "embedding"): ("vocab", "embed"),
    ("final_norm", "scale"): ("norm",),
    ("lm_head", "kernel"): ("embed", "vocab"),
    ("score", "kernel"): ("embed", "labels"),
    ("hidden", "kernel"): ("embed", "labels"),
    ("hidden", "bias"): ("labels",),
    ("out", "kernel"): ("labels", "labels"),
    ("out", "bias"): ("labels",),
    ("input_norm", "scale"): ("norm",),
    ("post_attention_norm", "scale"): ("norm",),
    ("q_norm", "scale"): ("head_dim",),
    ("k_norm", "scale"): ("head_dim",),
    ("q_proj", "kernel"): ("embed", "heads"),
    ("k_proj", "kernel"): ("embed", "kv_heads"),
    ("v_proj", "kernel"): ("embed", "kv_heads"),
    ("o_proj", "kernel"): ("heads", "embed"),
    ("q_proj", "bias"): ("heads",),
    ("k_proj", "bias"): ("kv_heads",),
    ("v_proj", "bias"): ("kv_heads",),
    ("o_proj", "bias"): ("norm",),
    ("gate_proj", "kernel"): ("embed", "mlp"),
    ("up_proj", "kernel"): ("embed", "mlp"),
    ("down_proj", "kernel"): ("mlp", "embed"),
    ("gate_proj", "bias"): ("mlp",),
    ("up_proj", "bias"): ("mlp",),
    ("down_proj", "bias"): ("norm",),
}

# logical axis -> mesh axis (None: replicated)
MESH_RULES = {
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "layers": None,
    "norm": None,
    "head_dim": None,
    "labels": None,
}


def _key_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def logical_axes(path) -> tuple[str, ...]:
    """Logical axes of the leaf at ``path`` (a key path or a tuple of names) in the params pytree."""
    names = _key_names(path)
    rule = LOGICAL_AXES.get(names[-2:])
    if rule is None:
        raise ValueError(f"no sharding rule for param {'/'.join(names)}; add one to nabla_jax/sharding/rules.py")
    return ("layers", *rule) if names[0] == "layers" else rule


def _unit(config: DecoderConfig, logical: str) -> int:
    """Elements per indivisible group along a logical axis (a head's width for head axes)."""
    return config.head_dim if logical in ("heads", "kv_heads") else 1


def leaf_spec(config: DecoderConfig, path, shape: tuple[int, ...], axis_sizes: dict[str, int]) -> PartitionSpec:
    """The PartitionSpec of one leaf: its logical axes mapped to mesh axes, replicated where they do not divide."""
    logical = logical_axes(path)
    if len(logical) != len(shape):
        raise ValueError(f"param {'/'.join(_key_names(path))} has shape {shape}, expected axes {logical}")
    spec = []
    for name, dim in zip(logical, shape):
        axis = MESH_RULES[name]
        size = axis_sizes.get(axis, 1) if axis is not None else 1
        unit = _unit(config, name)
        divisible = size > 1 and dim % unit == 0 and (dim // unit) % size == 0
        spec.append(axis if divisible else None)
    return PartitionSpec(*spec)


def param_specs(config: DecoderConfig, params_or_shapes, mesh: Mesh):
    """A pytree of :class:`PartitionSpec` matching ``params_or_shapes`` (arrays or ``ShapeDtypeStruct``)."""
    sizes = dict(mesh.shape)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf_spec(config, path, tuple(leaf.shape), sizes), params_or_shapes
    )
