"""``NablaConfig``: every setting of the ∇-Reasoner decoder, with the official code's names and the defaults of its
MATH-500 script (paper.md §2.2): Qwen2.5-7B-Instruct, max length 1024, logits embedder, rollout temperature 0.6 /
top-p 0.95 / top-k 20, resample temperature 0.5 / top-p 0.95 / top-k 20, confidence <= 0.97, gradient norm >= 4,
8 generations, 20 DTO iterations at learning rate 0.01, reward_coeff 1.0 and nll_coeff 1e-3 (lambda = 1000)."""

from __future__ import annotations

import dataclasses
import math

from nabla_jax.dto.config import DTOConfig
from nabla_jax.generation.sampling import SamplingConfig

_DTO = DTOConfig()  # one source for the DTO defaults


@dataclasses.dataclass(frozen=True)
class NablaConfig:
    """Static (hashable) settings; a ``jax.jit`` static argument.

    Ablation switches: ``use_dto=False`` resamples the first ahead token from the rollout's own logits (blind
    resampling, the paper's no-DTO rejection-rate baseline); ``grad_caching=False``; ``selection=False`` optimises
    every token (the confidence / entropy / gradient tests are all skipped); ``update_positions`` "first" (official
    code) or "all" (paper Alg. 2); ``rejection_sampling=False`` accepts every proposal.
    A threshold of None switches that test off.
    """

    # DTO: the fields and defaults of nabla_jax.dto.DTOConfig
    max_iters: int = _DTO.max_iters
    learning_rate: float = _DTO.learning_rate
    min_lr_ratio: float = _DTO.min_lr_ratio
    weight_decay: float = _DTO.weight_decay
    reward_coeff: float = _DTO.reward_coeff
    nll_coeff: float = _DTO.nll_coeff
    embedder: str = _DTO.embedder
    update_positions: str = _DTO.update_positions
    grad_caching: bool = _DTO.grad_caching
    tau: float = _DTO.tau
    gumbel: bool = _DTO.gumbel
    dto_dtype: str = _DTO.dto_dtype
    # token selection
    confidence_threshold: float | None = 0.97
    entropy_threshold: float | None = None
    grad_threshold: float | None = 4.0
    selection: bool = True
    # rollouts and resampling
    rollout_temperature: float = 0.6
    rollout_top_k: int = 20
    rollout_top_p: float = 0.95
    rollout_repetition_penalty: float | None = None  # None: the policy's generation_config.json, else 1 (off)
    resample_temperature: float = 0.5
    resample_top_k: int = 20
    resample_top_p: float = 0.95
    # budgets and switches
    max_n_generations: int = 8
    max_new_tokens: int = 1024
    rejection_sampling: bool = True
    use_dto: bool = True
    # "before" each iteration (ours: max_n_generations=1 is the first rollout alone) or "after" it (the official
    # loop: one DTO run and one proposal happen even at max_n_generations=1; larger budgets behave the same)
    budget_check: str = "before"
    # a DTO run that starts where the gradient selector has just run (nothing committed since) takes the selector's
    # dL/dy as its first full step instead of recomputing it (the same forward/backward on the same inputs; the
    # official code runs it twice). False recomputes it; the records are the same either way.
    reuse_probe_gradient: bool = True
    # Carry the prefix keys/values from one iteration to the next: the policy's are the rollouts' own (no pass), the
    # reward model's run only over the newly committed tokens (in windows of phases.PREFIX_WINDOW slots). False
    # rebuilds both models' whole prefix at every iteration, as the official code re-runs it; the records are the same
    # up to float rounding of the keys/values (other matmul shapes). Not applied on a multi-device mesh
    # (NablaReasoner rebuilds there: the extension loop deadlocked XLA CPU's collectives).
    carry_prefix: bool = True

    def __post_init__(self):
        validate(self)

    @property
    def dto(self) -> DTOConfig:
        names = [f.name for f in dataclasses.fields(DTOConfig)]
        return DTOConfig(**{name: getattr(self, name) for name in names})

    @property
    def rollout_sampling(self) -> SamplingConfig:
        penalty = 1.0 if self.rollout_repetition_penalty is None else self.rollout_repetition_penalty
        return SamplingConfig(self.rollout_temperature, self.rollout_top_k, self.rollout_top_p, penalty)

    @property
    def resample_sampling(self) -> SamplingConfig:
        return SamplingConfig(self.resample_temperature, self.resample_top_k, self.resample_top_p)

    @property
    def uses_grad_probe(self) -> bool:
        return self.selection and self.grad_threshold is not None

    def replace(self, **changes) -> "NablaConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides) -> "NablaConfig":
        """An official script's settings (``official-math500``, ``official-aime``, ``official-amc``,
        ``official-readme``; see :mod:`nabla_jax.presets`), with ``overrides`` on top."""
        from nabla_jax.presets import preset

        return cls(**{**preset(name), **overrides})


def _positive_int(config, name):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"NablaConfig.{name} must be an integer >= 1, got {value!r}")


def validate(config: NablaConfig) -> None:
    _positive_int(config, "max_n_generations")
    _positive_int(config, "max_new_tokens")
    for name in ("confidence_threshold", "entropy_threshold", "grad_threshold"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ValueError(f"NablaConfig.{name} must be a finite number or None (off), got {value!r}")
    if config.confidence_threshold is not None and not 0.0 <= config.confidence_threshold <= 1.0:
        raise ValueError(f"NablaConfig.confidence_threshold must be in [0, 1], got {config.confidence_threshold}")
    if config.budget_check not in ("before", "after"):
        raise ValueError(f"NablaConfig.budget_check must be 'before' or 'after' (official), got {config.budget_check!r}")
    for name in ("selection", "rejection_sampling", "use_dto", "reuse_probe_gradient", "carry_prefix"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"NablaConfig.{name} must be a bool, got {getattr(config, name)!r}")
    try:
        config.dto  # noqa: B018  (validates the DTO fields, naming them)
        config.rollout_sampling  # noqa: B018
        config.resample_sampling  # noqa: B018
    except ValueError as err:
        raise ValueError(f"NablaConfig: {err}") from None
