"""Putting params and batches on a mesh: params by :mod:`nabla_jax.sharding.rules`, batches by rows over ``data``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nabla_jax.models.config import DecoderConfig
from nabla_jax.sharding.rules import param_specs


def shard_params(params, config: DecoderConfig, mesh: Mesh):
    """``params`` placed on ``mesh`` by the sharding rules (``jax.device_put`` with ``NamedSharding``)."""
    specs = param_specs(config, params, mesh)
    shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs)
    return jax.device_put(params, shardings)


def batch_spec(shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Leading (problem) axis over ``data`` when it divides evenly; replicated otherwise."""
    data = dict(mesh.shape).get("data", 1)
    if len(shape) and data > 1 and shape[0] % data == 0:
        return PartitionSpec("data")
    return PartitionSpec()


def shard_batch(tree, mesh: Mesh | None):
    """Every array of ``tree`` with its leading axis split over ``data`` (unchanged when ``mesh`` is None)."""
    if mesh is None:
        return tree
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, batch_spec(jnp.shape(x), mesh))), tree)


def params_mesh(params) -> Mesh | None:
    """The mesh ``params`` were placed on by :func:`shard_params` (None for params on a single device)."""
    leaves = jax.tree_util.tree_leaves(params)
    sharding = getattr(leaves[0], "sharding", None) if leaves else None
    return sharding.mesh if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, Mesh) else None
