"""Sampling defaults from a checkpoint's ``generation_config.json``, as the official runs get them.

The official rollouts go through a vLLM server that fills every sampling field a request leaves unset from the
model's ``generation_config.json``: for Qwen2.5-7B-Instruct a repetition penalty of 1.05, top-k 20, and the end
tokens ``<|im_end|>`` (151645) and ``<|endoftext|>`` (151643). Here too, a setting the user does not give comes from
that file when the checkpoint has one, else from the library's own default; the file's EOS ids are always added to
the model's (either one ends a response).
"""

from __future__ import annotations

import dataclasses
import json
import os

FILE = "generation_config.json"


@dataclasses.dataclass(frozen=True)
class GenerationDefaults:
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    eos_token_ids: tuple[int, ...] = ()

    def pick(self, name: str, given, fallback):
        """``given`` when set, else this file's value, else ``fallback``."""
        if given is not None:
            return given
        value = getattr(self, name)
        return fallback if value is None else value


def _ids(value) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


def read_generation_config(path: str | None) -> GenerationDefaults:
    """The defaults in ``path``'s ``generation_config.json`` (``path`` a checkpoint directory or the file), or
    none when there is no such file (GGUF files, bundled names, Orbax directories without one)."""
    if path is None:
        return GenerationDefaults()
    file = os.path.join(path, FILE) if os.path.isdir(path) else path
    if not (os.path.isfile(file) and os.path.basename(file).endswith(".json")):
        return GenerationDefaults()
    try:
        with open(file, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{file}: not a readable generation config ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(raw).__name__}")
    sampled = raw.get("do_sample", True)  # greedy checkpoints say so with do_sample false
    number = lambda key, kind: kind(raw[key]) if raw.get(key) is not None else None  # noqa: E731
    try:
        return GenerationDefaults(
            temperature=number("temperature", float) if sampled else 0.0,
            top_k=number("top_k", int),
            top_p=number("top_p", float),
            repetition_penalty=number("repetition_penalty", float),
            eos_token_ids=_ids(raw.get("eos_token_id")),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{file}: a sampling field has the wrong type ({err})") from None


def with_generation_eos(config, defaults: GenerationDefaults):
    """``config`` whose EOS ids also hold the generation config's."""
    merged = tuple(sorted(set(config.eos_token_ids) | set(defaults.eos_token_ids)))
    return config if merged == tuple(config.eos_token_ids) else config.replace(eos_token_ids=merged)
