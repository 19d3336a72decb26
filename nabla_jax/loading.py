"""Checkpoints to ``(config, params, tokenizer)``: a Hugging Face directory, a GGUF file, an Orbax checkpoint written
by ``nabla-jax convert``, or a bundled name (:func:`resolve_checkpoint`); and the policy,
``load_policy``. Reward models are built on these by :func:`nabla_jax.rewards.load_reward`.

Loaded models carry ``config``, ``params`` and ``tokenizer``; their methods are thin jitted wrappers over the pure
functions of :mod:`nabla_jax.models.decoder`, which is what the algorithms use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp

from convert.errors import CheckpointError
from nabla_jax.bundled import SMOLLM2_NAME, resolve_model, smollm2_gguf_path  # noqa: F401 (re-exported)
from nabla_jax.models.generation_config import GenerationDefaults, read_generation_config, with_generation_eos
from nabla_jax.models import decoder
from nabla_jax.models.config import DecoderConfig

GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
# files any one of which holds a vocabulary transformers can build a tokenizer from
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")


class ModelKindError(ValueError):
    """A reward model was loaded as a policy, or the reverse."""


def resolve_checkpoint(path: str, dtype=None, allow_nonfinite: bool = False) -> tuple[DecoderConfig, dict, Any]:
    """``(config, params, tokenizer)`` from any supported source. tokenizer is None when the source has none.
    Weights holding NaN or inf are refused (:class:`convert.finite.NonFiniteWeightsError`) unless
    ``allow_nonfinite``."""
    config, params, tokenizer = _read_checkpoint(path, dtype)
    if not allow_nonfinite:
        from convert.finite import check_finite_params

        check_finite_params(config, params, path)
    return config, params, tokenizer


def _read_checkpoint(path: str, dtype) -> tuple[DecoderConfig, dict, Any]:
    from convert.gguf_file import gguf_tokenizer, load_gguf_params
    from convert.hf import load_hf_params
    from convert.orbax_dir import is_orbax_dir, load_orbax

    path = resolve_model(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model path not found: {path}")
    if os.path.isfile(path):
        if not path.endswith(".gguf"):
            raise ValueError(f"{path}: expected a directory or a .gguf file")
        config, params = load_gguf_params(path, dtype=dtype or jnp.float32)
        return config, params, gguf_tokenizer(path)
    if is_orbax_dir(path):
        config, params = load_orbax(path, dtype=dtype)
    else:
        config, params = load_hf_params(path, dtype=dtype)
    return config, params, directory_tokenizer(path)


def directory_tokenizer(path: str):
    """transformers' tokenizer saved in ``path``, or None when the directory has no tokenizer files."""
    if not any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_file = os.path.join(path, "tokenizer_config.json")
    declared = None
    if os.path.exists(config_file):
        with open(config_file, encoding="utf-8") as handle:
            try:
                raw = json.load(handle)
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{config_file}: not valid JSON ({err})") from None
        declared = raw.get("tokenizer_class") if isinstance(raw, dict) else None
    if not any(os.path.exists(os.path.join(path, f)) for f in TOKENIZER_VOCAB_FILES):
        raise CheckpointError(
            f"{path}: tokenizer_config.json but no tokenizer.json (nor another vocabulary file: "
            f"{', '.join(TOKENIZER_VOCAB_FILES[1:])}); copy the tokenizer files of the model into the directory"
        )
    try:
        if declared in GENERIC_TOKENIZER_CLASSES:
            # AutoTokenizer would pick the model family's tokenizer class from config.json (e.g. Qwen2Tokenizer),
            # whose own pre-tokenizer replaces the one in tokenizer.json; a generic one is taken exactly as saved
            return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
        return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot load the tokenizer ({type(err).__name__}: {first})") from None


@functools.partial(jax.jit, static_argnums=0)
def _logits(config, params, ids, mask):
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids), positions, mask)
    return decoder.lm_logits(config, params, hidden)


def token_batch(token_ids, mask) -> tuple[jax.Array, jax.Array]:
    ids = jnp.asarray(token_ids, dtype=jnp.int32)
    if ids.ndim == 1:
        ids = ids[None]
    mask = jnp.ones(ids.shape, bool) if mask is None else jnp.asarray(mask, bool).reshape(ids.shape)
    return ids, mask


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model's config, params and tokenizer, and where it was loaded from."""

    config: DecoderConfig
    params: dict
    tokenizer: Any = None
    source: str = ""

    def _check_ids(self, ids: jax.Array) -> None:
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"token id out of range [0, {self.config.vocab_size}) for {self.source or 'model'}")


@dataclasses.dataclass(frozen=True, eq=False)
class Policy(LoadedModel):
    """A causal LM. ``logits(token_ids, mask=None) -> [B, T, V]`` float32.

    Padding may sit on either side: positions count only the tokens the mask marks as real. ``generation`` holds
    the sampling defaults of the checkpoint's ``generation_config.json`` (empty when it has none)."""

    generation: GenerationDefaults = GenerationDefaults()

    def logits(self, token_ids, mask=None) -> jax.Array:
        ids, mask = token_batch(token_ids, mask)
        self._check_ids(ids)
        return _logits(self.config, self.params, ids, mask)


def host_staging(mesh):
    """Where a checkpoint is read before sharding: host memory (the CPU backend) when ``mesh`` is given, so a model
    larger than one accelerator's memory is never gathered on one device; the default device otherwise."""
    if mesh is None:
        return contextlib.nullcontext()
    try:
        return jax.default_device(jax.devices("cpu")[0])
    except RuntimeError:  # no CPU backend (JAX_PLATFORMS without cpu)
        return contextlib.nullcontext()


def place_params(config: DecoderConfig, params: dict, mesh) -> dict:
    """``params`` sharded over ``mesh`` (a ``jax.sharding.Mesh`` or a spec such as ``"data=2,tensor=4"``)."""
    if mesh is None:
        return params
    from nabla_jax.sharding import make_mesh, shard_params

    return shard_params(params, config, make_mesh(mesh) if isinstance(mesh, (str, dict)) else mesh)


def load_policy(path: str, dtype=None, mesh=None, allow_nonfinite: bool = False) -> Policy:
    """Load a causal LM (``*ForCausalLM``). ``dtype`` None keeps the stored dtype (GGUF dequantises to float32).
    ``mesh`` (a Mesh or a spec like ``"fsdp=2,tensor=4"``) shards the params by :mod:`nabla_jax.sharding`.
    Non-finite weights are refused unless ``allow_nonfinite``."""
    with host_staging(mesh):
        config, params, tokenizer = resolve_checkpoint(path, dtype, allow_nonfinite)
    if config.is_reward_model:
        raise ModelKindError(
            f"{path} is a reward model ({config.architecture}), not a policy; load it with nabla_jax.load_reward"
        )
    resolved = resolve_model(path)
    generation = read_generation_config(resolved if os.path.isdir(resolved) else None)
    config = with_generation_eos(config, generation)
    return Policy(config, place_params(config, params, mesh), tokenizer, path, generation)
