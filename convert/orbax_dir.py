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
import shutil
import tempfile

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from convert.hf import CheckpointError
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
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
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
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)


def load_orbax(directory: str, dtype=None) -> tuple[DecoderConfig, dict]:
    directory = os.path.abspath(directory)
    with open(os.path.join(directory, MARKER), encoding="utf-8") as handle:
        meta = json.load(handle)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{directory}: {MARKER} does not describe a {FORMAT} checkpoint")
    config = load_config(directory)
    stored = jnp.dtype(meta["dtype"])
    target = param_shapes(config, stored)
    try:
        params = ocp.StandardCheckpointer().restore(os.path.join(directory, "params"), target)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise CheckpointError(f"{directory}: params do not match config.json ({err})") from None
    if dtype is not None and jnp.dtype(dtype) != stored:
        params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    return config, params
