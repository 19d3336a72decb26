import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

from tests.hf_models import make_torch_model, save_torch_model


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """``hf_checkpoint(name, **kw) -> (directory, torch_model)``, cached per (name, kw) for the session."""
    cache = {}

    def make(name: str, max_shard_size=None, **overrides):
        key = (name, max_shard_size, tuple(sorted(overrides.items())))
        if key not in cache:
            model = make_torch_model(name, **overrides)
            directory = str(tmp_path_factory.mktemp(name))
            cache[key] = (save_torch_model(model, directory, max_shard_size), model)
        return cache[key]

    return make
