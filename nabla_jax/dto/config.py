"""DTO hyperparameters, with the official code's names and its script defaults.

The loss is ``L = -(nll_coeff * log pi(y|x) + reward_coeff * r(y|x))``. In the paper's notation
(``L = -lambda * r - log pi``) this is ``lambda = reward_coeff / nll_coeff`` up to an overall scale: the official
defaults (1.0 and 1e-3) are ``lambda = 1000``.
"""

from __future__ import annotations

import dataclasses
import math

EMBEDDERS = ("logits", "latents")
UPDATE_POSITIONS = ("first", "all")
DTO_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class DTOConfig:
    """Static (hashable) DTO settings; a ``jax.jit`` static argument.

    - ``embedder``: ``"logits"`` optimises per-position vocabulary logits ``[A, V]``; ``"latents"`` optimises the final
      hidden states after the last norm ``[A, d]``, mapped to logits by the frozen LM head.
    - ``update_positions``: ``"first"`` moves only ahead position 0 (the official code's default);
      ``"all"`` moves every ahead position (the paper's Alg. 2). Only the moving positions are parameterised.
    - ``grad_caching``: reuse ``dL/dy`` while no argmax changes (exact; see :mod:`nabla_jax.dto.loop`).
    - ``gumbel``: add Gumbel noise inside the straight-through one-hot (off, as in the official code). With noise on,
      the cached gradient is no longer exact.
    - ``dto_dtype``: ``"float32"`` (default) or ``"bfloat16"``, the official runs' precision for the optimised
      variables and the Adam state (steps below half a bfloat16 spacing are lost; see :mod:`nabla_jax.dto.optimizer`).
    - ``weight_decay`` is decoupled (AdamW, as the paper's Tab. 4). The official code uses ``torch.optim.Adam``
      whose weight decay is coupled L2; both are identical at the default 0.
    """

    max_iters: int = 20
    learning_rate: float = 0.01
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    reward_coeff: float = 1.0
    nll_coeff: float = 1e-3
    embedder: str = "logits"
    update_positions: str = "first"
    grad_caching: bool = True
    tau: float = 1.0
    gumbel: bool = False
    dto_dtype: str = "float32"

    def __post_init__(self):
        validate(self)

    @property
    def lam(self) -> float:
        """The paper's lambda, ``reward_coeff / nll_coeff`` (inf when nll_coeff is 0)."""
        return self.reward_coeff / self.nll_coeff if self.nll_coeff else math.inf

    def replace(self, **changes) -> "DTOConfig":
        return dataclasses.replace(self, **changes)


def _finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"DTOConfig.{name} must be a finite number, got {value!r}")
    return float(value)


def validate(config: DTOConfig) -> None:
    if isinstance(config.max_iters, bool) or not isinstance(config.max_iters, int) or config.max_iters < 1:
        raise ValueError(f"DTOConfig.max_iters must be an int >= 1, got {config.max_iters!r}")
    if _finite("learning_rate", config.learning_rate) <= 0:
        raise ValueError(f"DTOConfig.learning_rate must be > 0, got {config.learning_rate!r}")
    if not 0.0 <= _finite("min_lr_ratio", config.min_lr_ratio) <= 1.0:
        raise ValueError(f"DTOConfig.min_lr_ratio must be in [0, 1], got {config.min_lr_ratio!r}")
    if _finite("weight_decay", config.weight_decay) < 0:
        raise ValueError(f"DTOConfig.weight_decay must be >= 0, got {config.weight_decay!r}")
    _finite("reward_coeff", config.reward_coeff)
    _finite("nll_coeff", config.nll_coeff)
    if _finite("tau", config.tau) <= 0:
        raise ValueError(f"DTOConfig.tau must be > 0, got {config.tau!r}")
    if config.embedder not in EMBEDDERS:
        raise ValueError(f"DTOConfig.embedder must be one of {EMBEDDERS}, got {config.embedder!r}")
    if config.update_positions not in UPDATE_POSITIONS:
        raise ValueError(
            f"DTOConfig.update_positions must be one of {UPDATE_POSITIONS} "
            f"('first' = official code, 'all' = paper Alg. 2), got {config.update_positions!r}"
        )
    if config.dto_dtype not in DTO_DTYPES:
        raise ValueError(f"DTOConfig.dto_dtype must be one of {DTO_DTYPES}, got {config.dto_dtype!r}")
    for name in ("grad_caching", "gumbel"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"DTOConfig.{name} must be a bool, got {getattr(config, name)!r}")
