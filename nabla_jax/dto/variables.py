"""The optimised variables: which positions move, how they become logits and straight-through one-hots.

Only the M moving positions are parameterised (M = 1 for ``update_positions="first"``, M = A for ``"all"``), in
float32 whatever the model dtype (or bfloat16, the official runs' precision, with ``dto_dtype``). The positions that
do not move are stored as token ids: their one-hots are constant, exactly as a frozen logit row (the official code
masks their gradient, so they never change).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nabla_jax.dto.config import DTOConfig
from nabla_jax.dto.models import ModelPair
from nabla_jax.dto.straight_through import straight_through_onehot
from nabla_jax.generation.sampling import first_argmax
from nabla_jax.models import decoder


def num_moving(config: DTOConfig, ahead_size: int) -> int:
    return 1 if config.update_positions == "first" else ahead_size


def variable_size(models: ModelPair, config: DTOConfig) -> int:
    """Trailing size of one position's variables: V for logits, d for latents."""
    return models.vocab_size if config.embedder == "logits" else models.lm_config.hidden_size


def check_init_shape(models: ModelPair, config: DTOConfig, init_shape: tuple, where: str = "init") -> None:
    want = variable_size(models, config)
    if len(init_shape) != 2 or init_shape[0] < 1 or init_shape[1] != want:
        kind = "vocabulary size" if config.embedder == "logits" else "hidden size"
        raise ValueError(
            f"{where} must have shape [ahead_len >= 1, {want}] (embedder={config.embedder!r}: the policy's {kind}), "
            f"got {tuple(init_shape)}"
        )


def to_logits(models: ModelPair, config: DTOConfig, variables: jax.Array) -> jax.Array:
    """float32 logits ``[..., V]``: the variables themselves, or latents through the frozen LM head."""
    if config.embedder == "logits":
        return variables.astype(jnp.float32)
    head = decoder.output_matrix(models.lm_config, models.lm_params)
    return jnp.dot(variables.astype(jnp.float32), head, preferred_element_type=jnp.float32)


def split_init(models: ModelPair, config: DTOConfig, init: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(moving variables [M, X] in config.dto_dtype, token ids [A])`` from the init variables of every ahead
    position (in bfloat16 the init is rounded first, as the official copy of the bfloat16 model output is)."""
    check_init_shape(models, config, init.shape)
    init = init.astype(config.dto_dtype)
    moving = init[: num_moving(config, init.shape[0])]
    token_ids = first_argmax(to_logits(models, config, init))
    return moving, token_ids


def moving_onehots(models: ModelPair, config: DTOConfig, variables: jax.Array, key: jax.Array | None) -> jax.Array:
    """Straight-through one-hots ``[M, V]`` of the moving positions (Gumbel noise only if ``config.gumbel``)."""
    z = to_logits(models, config, variables)
    return straight_through_onehot(z, config.tau, key if config.gumbel else None)


def all_onehots(moving: jax.Array, token_ids: jax.Array) -> jax.Array:
    """``[A, V]``: the moving positions' one-hots followed by constant one-hots of the positions that stay."""
    m, vocab = moving.shape
    if m == token_ids.shape[0]:
        return moving
    return jnp.concatenate([moving, jax.nn.one_hot(token_ids[m:], vocab, dtype=moving.dtype)])
