"""Device meshes and sharding rules: params over ``fsdp``/``tensor``, batches of problems over ``data``."""

from nabla_jax.sharding.mesh import MESH_AXES, make_mesh, parse_mesh_spec
from nabla_jax.sharding.place import batch_spec, params_mesh, shard_batch, shard_params
from nabla_jax.sharding.rules import LOGICAL_AXES, MESH_RULES, leaf_spec, logical_axes, param_specs

__all__ = [
    "LOGICAL_AXES",
    "MESH_AXES",
    "MESH_RULES",
    "batch_spec",
    "leaf_spec",
    "logical_axes",
    "make_mesh",
    "param_specs",
    "params_mesh",
    "parse_mesh_spec",
    "shard_batch",
    "shard_params",
]
