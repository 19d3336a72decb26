"""Published architecture configs (no weights): see README.md in this folder."""

from __future__ import annotations

import os

from nabla_jax.models.config import DecoderConfig, load_config

FOLDER = os.path.dirname(__file__)
PUBLISHED = {
    name[: -len(".json")]: os.path.join(FOLDER, name) for name in sorted(os.listdir(FOLDER)) if name.endswith(".json")
}


def published_config(name: str) -> DecoderConfig:
    """A published config by short name (``qwen2.5-7b-instruct``, ...) or a path to a config.json / directory."""
    if name in PUBLISHED:
        return load_config(PUBLISHED[name])
    if os.path.exists(name):
        return load_config(name)
    raise FileNotFoundError(f"unknown config {name!r}; bundled: {', '.join(PUBLISHED)}")
