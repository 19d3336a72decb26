"""``make_mesh("data=2,fsdp=2,tensor=2")``: a device mesh with the three axes every sharding rule names.

``data`` splits the problems of a batch, ``fsdp`` splits the params' hidden dimension (gathered when used) and
``tensor`` splits heads, MLP units and the vocabulary (Megatron-style). An axis left out has size 1; one axis may
be ``-1`` to take whatever the others leave.
"""

from __future__ import annotations

import math

import jax
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "tensor")


def parse_mesh_spec(spec: str | dict) -> dict[str, int]:
    """``"data=2,tensor=4"`` or ``{"data": 2, "tensor": 4}`` -> sizes of all three axes (missing ones 1)."""
    if isinstance(spec, str):
        items = {}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            name, eq, size = part.partition("=")
            name = name.strip()
            if not eq or not size.strip().lstrip("-").isdigit():
                raise ValueError(f"bad mesh entry {part!r} in {spec!r}: expected AXIS=SIZE, e.g. data=2,tensor=4")
            if name in items:
                raise ValueError(f"mesh axis {name!r} given twice in {spec!r}")
            items[name] = int(size)
    elif isinstance(spec, dict):
        items = {str(k): v for k, v in spec.items()}
    else:
        raise TypeError(f"mesh spec must be a string or a dict, got {type(spec).__name__}")
    unknown = sorted(set(items) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"unknown mesh axis {', '.join(map(repr, unknown))}; the axes are {', '.join(MESH_AXES)}")
    sizes = {axis: items.get(axis, 1) for axis in MESH_AXES}
    for axis, size in sizes.items():
        if int(size) != size or (size < 1 and size != -1):
            raise ValueError(f"mesh axis {axis} has size {size}: sizes are integers >= 1 (or -1 for the rest)")
    if sum(size == -1 for size in sizes.values()) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {spec!r}")
    return {axis: int(size) for axis, size in sizes.items()}


def resolve_sizes(sizes: dict[str, int], device_count: int) -> dict[str, int]:
    """Fill a -1 axis and check that the sizes multiply to ``device_count``."""
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if -1 in sizes.values():
        if device_count % fixed:
            raise ValueError(f"mesh {format_mesh(sizes)}: {device_count} devices do not divide by {fixed}")
        sizes = {axis: device_count // fixed if size == -1 else size for axis, size in sizes.items()}
    total = math.prod(sizes.values())
    if total != device_count:
        raise ValueError(
            f"mesh {format_mesh(sizes)} has {total} devices but {device_count} are available; "
            f"the axis sizes must multiply to the device count"
        )
    return sizes


def format_mesh(sizes: dict[str, int]) -> str:
    return ",".join(f"{axis}={size}" for axis, size in sizes.items())


def make_mesh(spec: str | dict, devices=None) -> Mesh:
    """A :class:`jax.sharding.Mesh` with axes ``(data, fsdp, tensor)`` over ``devices`` (default: all devices).

    The axes are ``Auto`` (GSPMD propagates shardings through ``jit``), so code written for one device runs
    unchanged on the mesh."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = resolve_sizes(parse_mesh_spec(spec), len(devices))
    shape = tuple(sizes[axis] for axis in MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)
