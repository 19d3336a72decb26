"""Refuse checkpoints holding NaN or infinite weights, naming the tensor.

A single non-finite weight turns every logit into NaN; generation then samples padding and a run records silent
garbage. The check is one pass over the weights (a reduction per leaf, on whatever device holds them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from convert.errors import CheckpointError
from convert.names import tensor_slots
from nabla_jax.models.config import DecoderConfig


class NonFiniteWeightsError(CheckpointError):
    """A checkpoint holds NaN or infinite weights."""


def _count(path, leaf):
    bad = ~jnp.isfinite(leaf)
    if path[0].key == "layers":
        return jnp.sum(bad.reshape(bad.shape[0], -1), axis=1)
    return jnp.sum(bad)


@jax.jit
def _counts(params: dict) -> dict:
    """One program per checkpoint layout (not an eager reduction per leaf, each its own program to compile)."""
    return jax.tree_util.tree_map_with_path(_count, params)


def _bad_counts(params: dict) -> dict:
    """Per leaf: the count of non-finite entries, per layer for the stacked ``layers`` leaves."""
    return jax.device_get(_counts(params))


def check_finite_params(config: DecoderConfig, params: dict, source: str) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the first tensor (by its Hugging Face name) with NaN/inf."""
    counts = _bad_counts(params)
    if not any(np.any(np.asarray(c)) for c in jax.tree_util.tree_leaves(counts)):
        return
    bad = []
    for slot in tensor_slots(config, params):
        leaf = counts
        for key in slot.path:
            leaf = leaf[key]
        n = int(np.asarray(leaf)[slot.layer] if slot.layer is not None else leaf)
        if n:
            bad.append(f"{slot.name} ({n} entries)")
    raise NonFiniteWeightsError(
        f"{source}: non-finite (NaN or infinite) weights in {bad[0]}"
        + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
        + "; refusing to load them (pass --allow-nonfinite to load anyway)"
    )
