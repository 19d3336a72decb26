"""Per-device memory plans: how much of one device the params, KV caches and DTO state of a run take on a mesh.

Everything is computed from ``jax.eval_shape`` (nothing is allocated), so a plan for a 64-device pod runs on a
laptop. A leaf's bytes on one device are ``prod_i ceil(shape[i] / shards_i) * itemsize``, the shards named by the
runtime's own specs (``nabla_jax.sharding.rules`` for params, ``shard_batch`` for batches). Counted: the params of
the policy and the reward model, one KV cache per model, the DTO state and its Adam moments, and optionally an
activation estimate (what each term holds: docs/design-notes.md). XLA adds its own buffers and fragmentation on
top; treat "fits" as necessary, not sufficient.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from nabla_jax.dto.config import DTOConfig
from nabla_jax.models import decoder
from nabla_jax.models.config import DecoderConfig
from nabla_jax.models.kv_cache import KVCache, init_cache

GiB = 1 << 30
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
DEFAULT_DEVICE_MEMORY = 80 * GiB

SpecFn = Callable[[DecoderConfig, dict, object], object]  # (config, shapes, mesh) -> PartitionSpec pytree


def parse_bytes(text: str | int) -> int:
    """``"80GiB"``, ``"141 GB"``, ``"512MiB"`` or a plain number of bytes -> bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError(f"bad memory size {text!r}: expected a number with an optional unit "
                         "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 80GiB")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def parse_plan_mesh(text: str | dict) -> dict[str, int]:
    """Mesh axis sizes for a plan (every axis explicit: with no devices there is nothing to fill a -1 from)."""
    from nabla_jax.sharding.mesh import parse_mesh_spec

    sizes = parse_mesh_spec(text)
    if -1 in sizes.values():
        raise ValueError(f"mesh {text!r}: a plan needs every axis size explicit (no -1)")
    return sizes


def abstract_mesh(sizes: dict[str, int]) -> jax.sharding.AbstractMesh:
    return jax.sharding.AbstractMesh(tuple(sizes.values()), tuple(sizes))


def _axes(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)


def device_elements(shape: tuple[int, ...], spec: P | None, sizes: dict[str, int]) -> int:
    """Elements of one device's shard: ``prod_i ceil(shape[i] / shards_i)`` (a dimension the spec leaves out,
    or None, is whole on every device)."""
    entries = tuple(spec or ()) + (None,) * (len(shape) - len(spec or ()))
    if len(entries) > len(shape):
        raise ValueError(f"PartitionSpec {spec} has more entries than the shape {shape} has dimensions")
    total = 1
    for dim, entry in zip(shape, entries):
        unknown = [a for a in _axes(entry) if a not in sizes]
        if unknown:
            raise ValueError(f"PartitionSpec {spec} names mesh axes {unknown} not in the mesh {sizes}")
        shards = math.prod(sizes[a] for a in _axes(entry))
        total *= -(-dim // shards)
    return total


def tree_bytes(shapes, specs, sizes: dict[str, int]) -> tuple[int, int]:
    """``(global bytes, bytes on one device)`` of a pytree of shapes under a matching pytree of specs."""
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    spec_leaves = treedef.flatten_up_to(specs) if specs is not None else [None] * len(leaves)
    whole = sum(int(leaf.size) * leaf.dtype.itemsize for leaf in leaves)
    local = sum(device_elements(leaf.shape, spec, sizes) * leaf.dtype.itemsize
                for leaf, spec in zip(leaves, spec_leaves))
    return whole, local


def split(dim: int, axis: str, sizes: dict[str, int]) -> str | None:
    """``axis`` if it splits ``dim`` evenly, else None (replicated), as the sharding rules decide."""
    size = sizes.get(axis, 1)
    return axis if size > 1 and dim % size == 0 else None


def batch_specs(shapes, sizes: dict[str, int]):
    """Every leaf's leading (problem) axis over ``data``, as ``nabla_jax.sharding.shard_batch`` places batches."""
    return jax.tree_util.tree_map(lambda leaf: P(split(leaf.shape[0], "data", sizes)), shapes)


@dataclasses.dataclass(frozen=True)
class PlanRow:
    name: str
    detail: str
    global_bytes: int
    device_bytes: int


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    mesh: dict[str, int]
    rows: tuple[PlanRow, ...]
    device_memory: int
    settings: dict

    @property
    def devices(self) -> int:
        return math.prod(self.mesh.values())

    @property
    def total_device_bytes(self) -> int:
        return sum(r.device_bytes for r in self.rows)

    @property
    def fits(self) -> bool:
        return self.total_device_bytes <= self.device_memory

    def as_dict(self) -> dict:
        return {
            "mesh": dict(self.mesh),
            "devices": self.devices,
            "settings": dict(self.settings),
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "total_device_bytes": self.total_device_bytes,
            "device_memory": self.device_memory,
            "fits": self.fits,
        }


def params_row(name: str, config: DecoderConfig, dtype, sizes: dict[str, int], spec_fn: SpecFn) -> PlanRow:
    shapes = decoder.param_shapes(config, dtype)
    specs = spec_fn(config, shapes, abstract_mesh(sizes))
    whole, local = tree_bytes(shapes, specs, sizes)
    detail = f"{decoder.count_params(shapes):,} x {jnp.dtype(dtype).name}"
    return PlanRow(f"params: {name}", detail, whole, local)


def cache_shapes(config: DecoderConfig, batch: int, length: int, dtype) -> KVCache:
    return jax.eval_shape(lambda: init_cache(config, batch, length, dtype))


def cache_row(name: str, config: DecoderConfig, batch: int, length: int, dtype, sizes) -> PlanRow:
    """``init_cache(config, B, L)``: the batch over ``data``, the kv heads over ``tensor``."""
    shapes = cache_shapes(config, batch, length, dtype)
    spec = P(None, split(batch, "data", sizes), None, split(config.num_kv_heads, "tensor", sizes), None)
    whole, local = tree_bytes(shapes, KVCache(spec, spec), sizes)
    detail = (f"2 x [{config.num_layers}, {batch}, {length}, {config.num_kv_heads}, {config.head_dim}] "
              f"{jnp.dtype(dtype).name}")
    return PlanRow(f"kv cache: {name}", detail, whole, local)


def dto_state_shapes(config: DecoderConfig, dto: DTOConfig, ahead: int, dtype):
    """One problem's ``DTOState`` (from ``dto_init``) as shapes."""
    from nabla_jax.dto.loop import dto_init
    from nabla_jax.dto.models import ModelPair
    from nabla_jax.dto.variables import variable_size

    models = ModelPair(config, decoder.param_shapes(config, dtype))
    init = jax.ShapeDtypeStruct((ahead, variable_size(models, dto)), jnp.float32)
    return jax.eval_shape(lambda m, x: dto_init(m, dto, None, x), models, init)


def dto_rows(config: DecoderConfig, dto: DTOConfig, batch: int, ahead: int, dtype, sizes) -> list[PlanRow]:
    """The DTO state of B problems (variables, cached dL/dy, counters) and its Adam state, the batch over ``data``."""
    state = dto_state_shapes(config, dto, ahead, dtype)
    batched = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct((batch, *s.shape), s.dtype), state)
    opt, rest = batched.opt_state, batched._replace(opt_state=None)
    m, x = state.variables.shape
    cached = f" + cached dL/dy [{batch}, {m}, {config.vocab_size}]" if dto.grad_caching else ""
    rows = []
    for name, tree, detail in (
        ("dto variables", rest, f"[{batch}, {m}, {x}] float32 ({dto.update_positions} positions, "
         f"{dto.embedder}){cached}"),
        ("adam state", opt, f"2 moments x [{batch}, {m}, {x}] float32"),
    ):
        whole, local = tree_bytes(tree, batch_specs(tree, sizes), sizes)
        rows.append(PlanRow(name, detail, whole, local))
    return rows


def activation_row(configs: list[DecoderConfig], batch: int, length: int, ahead: int, dtype, sizes) -> PlanRow:
    """Estimate: the ahead logits plus the largest model's one-layer prefill working set."""
    lm = configs[0]
    big = max(configs, key=lambda c: (c.num_heads * length * 4 + 2 * c.intermediate_size, c.hidden_size))
    item = jnp.dtype(dtype).itemsize

    def local(dim, axis):
        return dim // sizes[axis] if split(dim, axis, sizes) else dim

    b = local(batch, "data")
    parts_global = (batch * ahead * lm.vocab_size * 4, batch * big.num_heads * length * length * 4,
                    batch * length * 2 * big.intermediate_size * item, batch * length * big.hidden_size * item)
    parts_local = (b * ahead * local(lm.vocab_size, "tensor") * 4,
                   b * local(big.num_heads, "tensor") * length * length * 4,
                   b * length * local(2 * big.intermediate_size, "tensor") * item,
                   b * length * big.hidden_size * item)
    detail = (f"estimate: ahead logits [{batch}, {ahead}, {lm.vocab_size}] float32 + one layer's prefill "
              f"(scores [{batch}, {big.num_heads}, {length}, {length}] float32, MLP, residual)")
    return PlanRow("activations", detail, sum(parts_global), sum(parts_local))


def memory_plan(
    policy: DecoderConfig,
    reward: DecoderConfig | None,
    mesh: str | dict,
    batch: int,
    max_len: int,
    ahead: int | None = None,
    dtype: str = "bfloat16",
    dto: DTOConfig = DTOConfig(),
    device_memory: int | str = DEFAULT_DEVICE_MEMORY,
    activations: bool = True,
    spec_fn: SpecFn | None = None,
) -> MemoryPlan:
    """The per-device memory table of a run. ``ahead`` (default ``max_len``) is the number of ahead positions
    (the reasoner's ``max_new_tokens``); ``spec_fn`` maps ``(config, param shapes, mesh)`` to PartitionSpecs
    (default: ``nabla_jax.sharding.rules.param_specs``)."""
    sizes = parse_plan_mesh(mesh)
    ahead = max_len if ahead is None else ahead
    for name, value in (("batch", batch), ("max_len", max_len), ("ahead", ahead)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if policy.is_reward_model:
        raise ValueError(f"the policy must be a causal LM, got a {policy.architecture} config")
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise ValueError(f"unknown dtype {dtype!r}; use float32 or bfloat16") from None
    if spec_fn is None:
        from nabla_jax.sharding.rules import param_specs as spec_fn
    models = [("policy", policy)] + ([("reward", reward)] if reward is not None else [])
    rows = [params_row(name, cfg, dt, sizes, spec_fn) for name, cfg in models]
    rows += [cache_row(name, cfg, batch, max_len, dt, sizes) for name, cfg in models]
    rows += dto_rows(policy, dto, batch, ahead, dt, sizes)
    if activations:
        rows.append(activation_row([cfg for _, cfg in models], batch, max_len, ahead, dt, sizes))
    settings = {"batch": batch, "max_len": max_len, "ahead": ahead, "dtype": dt.name, "embedder": dto.embedder,
                "update_positions": dto.update_positions, "grad_caching": dto.grad_caching}
    return MemoryPlan(sizes, tuple(rows), parse_bytes(device_memory), settings)


def format_plan(plan: MemoryPlan) -> str:
    """The plan as a markdown table."""
    mesh = ",".join(f"{a}={s}" for a, s in plan.mesh.items())
    s = plan.settings
    lines = [
        f"mesh {mesh} ({plan.devices} devices); batch {s['batch']}, max length {s['max_len']}, "
        f"{s['ahead']} ahead positions, {s['dtype']}",
        "",
        "| item | per device | global | what |",
        "|---|---:|---:|---|",
    ]
    for r in plan.rows:
        lines.append(f"| {r.name} | {format_bytes(r.device_bytes)} | {format_bytes(r.global_bytes)} | {r.detail} |")
    lines.append(f"| **total** | **{format_bytes(plan.total_device_bytes)}** | | |")
    verdict = "fits" if plan.fits else "does NOT fit"
    lines += ["", f"{verdict} in {format_bytes(plan.device_memory)} per device "
              f"({100 * plan.total_device_bytes / plan.device_memory:.1f}% used)"]
    return "\n".join(lines) + "\n"
