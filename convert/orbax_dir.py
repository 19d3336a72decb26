"""Orbax checkpoint directories written by ``nabla-jax convert``: params, config.json and the tokenizer together.

Layout::

    DST/config.json         the Hugging Face config of the model
    DST/nabla_jax.json      {"format": "nabla-jax-orbax", "version": 1, "dtype": ...}
    DST/params/             the params pytree, saved by orbax
    DST/tokenizer*.json ... the tokenizer, saved by transformers (when there is one)
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from convert.errors import CheckpointError
from convert.staging import staged_directory
from nabla_jax.models.config import DecoderConfig, config_to_dict, load_config
from nabla_jax.models.decoder import param_shapes

MARKER = "nabla_jax.json"
FORMAT = "nabla-jax-orbax"


def is_orbax_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MARKER))


def save_orbax(config: DecoderConfig, params: dict, directory: str, tokenizer=None) -> None:
    """Write a complete checkpoint directory. Written to a temporary sibling and renamed into place, so an existing
    ``directory`` is never left half-overwritten; refuses to replace a directory that is not one of ours."""
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and os.listdir(directory) and not is_orbax_dir(directory):
        raise FileExistsError(f"{directory} exists and is not a nabla-jax checkpoint; refusing to overwrite it")
    with staged_directory(directory, replace_existing=True) as staging:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(os.path.join(staging, "params"), params)
        checkpointer.wait_until_finished()
        with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as handle:
            json.dump(config_to_dict(config), handle, indent=2)
        dtype = str(jax.tree_util.tree_leaves(params)[0].dtype)
        with open(os.path.join(staging, MARKER), "w", encoding="utf-8") as handle:
            json.dump({"format": FORMAT, "version": 1, "dtype": dtype}, handle)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)


def _shapes(tree) -> dict:
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in leaves}


def check_stored_shapes(directory: str, target: dict) -> None:
    """The params' stored shapes (orbax's metadata) against the ones config.json implies."""
    try:
        meta = ocp.StandardCheckpointer().metadata(os.path.join(directory, "params"))
    except Exception as err:  # noqa: BLE001 - any unreadable metadata is a corrupt checkpoint
        raise CheckpointError(f"{directory}: cannot read the params' metadata, the checkpoint may be truncated or "
                              f"corrupt ({type(err).__name__})") from None
    stored, wanted = _shapes(getattr(meta, "item_metadata", meta) or {}), _shapes(target)
    if not stored:
        raise CheckpointError(f"{directory}: cannot read the params' metadata, the checkpoint may be truncated or "
                              "corrupt")
    if stored != wanted:
        diff = sorted(set(stored.items()) ^ set(wanted.items()))
        raise CheckpointError(f"{directory}: params do not match config.json (e.g. {diff[0][0]}: stored "
                              f"{stored.get(diff[0][0])}, config implies {wanted.get(diff[0][0])})")


def load_orbax(directory: str, dtype=None) -> tuple[DecoderConfig, dict]:
    directory = os.path.abspath(directory)
    with open(os.path.join(directory, MARKER), encoding="utf-8") as handle:
        try:
            meta = json.load(handle)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{directory}/{MARKER}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "dtype" not in meta:
        raise CheckpointError(f"{directory}: {MARKER} does not describe a {FORMAT} checkpoint")
    config = load_config(directory)
    stored = jnp.dtype(meta["dtype"])
    target = param_shapes(config, stored)
    check_stored_shapes(directory, target)
    try:
        params = ocp.StandardCheckpointer().restore(os.path.join(directory, "params"), target)
    except Exception as err:  # orbax and tensorstore raise many types for a truncated or corrupt data file
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(
            f"{directory}: cannot read the params, the checkpoint may be truncated or corrupt "
            f"({type(err).__name__}: {first})"
        ) from None
    if dtype is not None and jnp.dtype(dtype) != stored:
        params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    return config, params
