"""Our decoder against transformers (PyTorch, float32) on small random checkpoints, loaded the way a user loads."""

import numpy as np
import pytest
import torch

import nabla_jax
from tests.support.hf_models import CAUSAL_SPECS, CLASSIFIER_SPECS

TOL = 1e-4


def padded_batch(seed: int, vocab: int, lengths=(11, 7, 3), total=11, left=False):
    """Random ids with padding (id 0) on the right, or on the left when ``left``."""
    rng = np.random.RandomState(seed)
    ids = np.zeros((len(lengths), total), np.int64)
    mask = np.zeros_like(ids, bool)
    for row, length in enumerate(lengths):
        span = slice(total - length, total) if left else slice(0, length)
        ids[row, span] = rng.randint(3, vocab, length)
        mask[row, span] = True
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, positions


def torch_outputs(model, ids, mask, positions):
    with torch.no_grad():
        return model(
            torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)), position_ids=torch.tensor(positions)
        ).logits.numpy()


@pytest.mark.parametrize("name", CAUSAL_SPECS)
@pytest.mark.parametrize("left", [False, True])
def test_causal_lm_logits_match_transformers(hf_checkpoint, name, left):
    directory, model = hf_checkpoint(name)
    policy = nabla_jax.load_policy(directory)
    ids, mask, positions = padded_batch(0, policy.config.vocab_size, left=left)
    ref = torch_outputs(model, ids, mask, positions)
    ours = np.asarray(policy.logits(ids, mask))
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.abs(ref).max() > 1.0  # the comparison is not between near-zero numbers
    assert np.abs(ours - ref)[mask].max() <= TOL


@pytest.mark.parametrize("name", CLASSIFIER_SPECS)
@pytest.mark.parametrize("left", [False, True])
def test_classifier_scores_match_transformers(hf_checkpoint, name, left):
    directory, model = hf_checkpoint(name)
    reward = nabla_jax.load_reward(directory)
    ids, mask, positions = padded_batch(1, reward.config.vocab_size, left=left)
    ref = torch_outputs(model, ids, mask, positions)[:, 0]
    ours = np.asarray(reward.score(ids, mask))
    assert ours.shape == (3,)
    assert np.abs(ours - ref).max() <= TOL


def test_sharded_checkpoint_loads_like_single_file(hf_checkpoint):
    single, model = hf_checkpoint("qwen2")
    sharded, _ = hf_checkpoint("qwen2", max_shard_size="30KB")
    import os

    assert os.path.exists(os.path.join(sharded, "model.safetensors.index.json"))
    ids, mask, positions = padded_batch(2, model.config.vocab_size)
    ref = torch_outputs(model, ids, mask, positions)
    ours = np.asarray(nabla_jax.load_policy(sharded).logits(ids, mask))
    assert np.abs(ours - ref)[mask].max() <= TOL


@pytest.mark.parametrize("name", ["llama3_rope", "qwen3", "qwen2_cls"])
def test_gradient_wrt_input_embeddings_matches_torch(hf_checkpoint, name):
    import jax
    import jax.numpy as jnp

    from nabla_jax.models import decoder

    directory, model = hf_checkpoint(name)
    loader = nabla_jax.load_reward if name.endswith("_cls") else nabla_jax.load_policy
    loaded = loader(directory)
    cfg, params = loaded.config, loaded.params
    # left padding: transformers pools a classifier fed inputs_embeds at the last slot, so the real tokens end there
    ids, mask, positions = padded_batch(3, cfg.vocab_size, lengths=(9, 6), total=9, left=True)
    rng = np.random.RandomState(4)
    # a random linear functional of the outputs, scaled so that the gradient is of order one
    shape = ids.shape + ((cfg.vocab_size,) if not cfg.is_classifier else ())
    weights = (rng.randn(*shape) / (1.0 if cfg.is_classifier else 30.0)).astype(np.float32)

    def objective(embeds):
        hidden, _ = decoder.forward(cfg, params, embeds, jnp.asarray(positions), jnp.asarray(mask))
        if cfg.is_classifier:
            out = decoder.score(cfg, params, hidden, jnp.asarray(mask))[:, 0]
            return jnp.sum(out * weights[:, -1])
        out = decoder.lm_logits(cfg, params, hidden)
        return jnp.sum(jnp.where(jnp.asarray(mask)[..., None], out * weights, 0.0))

    embeds = decoder.embed(params, jnp.asarray(ids))
    ours = np.asarray(jax.grad(objective)(embeds))

    torch_embeds = model.get_input_embeddings()(torch.tensor(ids)).detach().requires_grad_(True)
    out = model(
        inputs_embeds=torch_embeds,
        attention_mask=torch.tensor(mask.astype(np.int64)),
        position_ids=torch.tensor(positions),
    ).logits
    if cfg.is_classifier:
        total = (out[:, 0] * torch.tensor(weights[:, -1])).sum()
    else:
        total = (out * torch.tensor(weights) * torch.tensor(mask[..., None])).sum()
    total.backward()
    ref = torch_embeds.grad.numpy()
    # tolerance relative to the gradient's scale (the classifiers' last-token gradients reach ~1e3 here)
    scale = np.abs(ref).max()
    assert scale > 0.1
    assert np.abs(ours - ref)[mask].max() <= TOL * max(1.0, scale)


def test_bfloat16_params_run_and_track_float32(hf_checkpoint):
    directory, _ = hf_checkpoint("llama")
    f32 = nabla_jax.load_policy(directory)
    bf16 = nabla_jax.load_policy(directory, dtype="bfloat16")
    assert bf16.params["layers"]["attn"]["q_proj"]["kernel"].dtype == np.dtype("bfloat16")
    ids, mask, _ = padded_batch(5, f32.config.vocab_size)
    a, b = np.asarray(f32.logits(ids, mask)), np.asarray(bf16.logits(ids, mask))
    assert b.dtype == np.float32
    # bfloat16 keeps 8 mantissa bits: agreement to a few percent of the logit scale, not to float32 precision
    scale = np.abs(a[mask]).max()
    assert np.abs(a - b)[mask].max() <= 0.05 * scale
    assert np.abs(a - b)[mask].max() > 1e-6  # it really ran in bfloat16
