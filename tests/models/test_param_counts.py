"""Full-size architectures without weights: jax.eval_shape parameter counts against the published numbers,
against transformers' own model built on the meta device, and (for one config) against arithmetic by hand."""

import json

import jax.numpy as jnp
import pytest
import torch
import transformers

from nabla_jax.configs import PUBLISHED, published_config
from nabla_jax.models.decoder import count_params, param_shapes

# parameter counts published with the checkpoints
PUBLISHED_COUNTS = {"qwen2.5-7b": 7_615_616_512, "qwen2.5-7b-instruct": 7_615_616_512, "llama-3.1-8b-instruct": 8_030_261_248}


def transformers_count(name: str) -> int:
    raw = json.load(open(PUBLISHED[name]))
    config = transformers.AutoConfig.for_model(**raw)
    model_class = getattr(transformers, raw["architectures"][0])
    with torch.device("meta"):
        model = model_class(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_eval_shape_counts_match_transformers_meta_model(name):
    ours = count_params(param_shapes(published_config(name), jnp.bfloat16))
    assert ours == transformers_count(name)
    if name in PUBLISHED_COUNTS:
        assert ours == PUBLISHED_COUNTS[name]


def test_qwen25_7b_count_by_hand():
    d, v, ffn, layers, kv = 3584, 152064, 18944, 28, 4 * 128
    attention = (d * d + d) + 2 * (d * kv + kv) + d * d  # q, k, v with bias; o without
    per_layer = attention + 3 * d * ffn + 2 * d  # gate/up/down; two norms
    total = v * d + layers * per_layer + d + d * v  # embeddings, layers, final norm, untied head
    assert total == 7_615_616_512
    assert count_params(param_shapes(published_config("qwen2.5-7b-instruct"))) == total
