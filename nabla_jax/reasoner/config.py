"""``NablaConfig``: every setting of the ∇-Reasoner decoder, nested (DTO, rollout and resample sampling), with the
defaults of the official MATH-500 script (the ``official-math500`` preset equals the defaults) and flat names that
follow the official code's."""

from __future__ import annotations

import dataclasses
import math

from nabla_jax.dto.config import DTOConfig
from nabla_jax.generation.sampling import SamplingConfig

@dataclasses.dataclass(frozen=True)
class NablaConfig:
    """Static (hashable) settings; a ``jax.jit`` static argument. Each default is written once, here or in
    :class:`DTOConfig`.

    - ``dto``: the DTO run at each selected position; ``rollout``: the rollouts' sampling (a repetition penalty of
      None takes the policy's ``generation_config.json``, else off, as the official runs); ``resample``: the
      proposal's first token.
    - Token selection: a threshold of None switches that test off; ``selection=False`` optimises every token.
    - Ablations: ``use_dto=False`` resamples the first ahead token from the rollout's own logits (blind resampling,
      the paper's no-DTO baseline); ``rejection_sampling=False`` accepts every proposal.

    :meth:`from_settings` and :meth:`replace` also take the official code's flat names (``learning_rate``,
    ``rollout_temperature``, ``resample_top_p``, ...; :func:`setting_names`), which the CLI, presets and sweeps use.
    """

    dto: DTOConfig = DTOConfig()
    rollout: SamplingConfig = SamplingConfig(temperature=0.6, top_k=20, top_p=0.95, repetition_penalty=None)
    resample: SamplingConfig = SamplingConfig(temperature=0.5, top_k=20, top_p=0.95)
    # token selection
    confidence_threshold: float | None = 0.97
    entropy_threshold: float | None = None
    grad_threshold: float | None = 4.0
    selection: bool = True
    # budgets and switches
    max_n_generations: int = 8
    max_new_tokens: int = 1024
    rejection_sampling: bool = True
    use_dto: bool = True
    # the gradient-free control: with use_dto off and a likelihood reward, the proposal samples from
    # softmax((rollout logits + mix_beta * log p_verifier(next token)) / resample temperature); None: off
    mix_beta: float | None = None
    # "before" each iteration (ours: max_n_generations=1 is the first rollout alone) or "after" it (the official
    # loop: one DTO run and one proposal happen even at max_n_generations=1; larger budgets behave the same)
    budget_check: str = "before"
    # a DTO run that starts where the gradient selector has just run (nothing committed since) takes the selector's
    # dL/dy as its first full step instead of recomputing it (the same records either way)
    reuse_probe_gradient: bool = True
    # carry the prefix keys/values between iterations (the policy's are the rollouts' own; the reward model's are
    # extended over newly committed tokens); False rebuilds both at every iteration, as the official code. The same
    # records up to float rounding; not applied on a multi-device mesh
    carry_prefix: bool = True

    def __post_init__(self):
        validate(self)

    @property
    def uses_grad_probe(self) -> bool:
        return self.selection and self.grad_threshold is not None

    def replace(self, **changes) -> "NablaConfig":
        """A copy with ``changes``: fields (``dto=DTOConfig(...)``) or flat setting names (``learning_rate=0.1``)."""
        fields = {name: changes.pop(name) for name in list(changes) if name in _FIELD_NAMES}
        sections: dict[str, dict] = {}
        names = setting_names()
        for name, value in changes.items():
            if name not in names:
                raise TypeError(f"NablaConfig has no setting {name!r}; settings: {', '.join(sorted(names))}")
            section, field = names[name]
            if section is None:
                fields[field] = value
            else:
                sections.setdefault(section, {})[field] = value
        for section, values in sections.items():
            base = fields.get(section, getattr(self, section))
            try:
                fields[section] = dataclasses.replace(base, **values)
            except ValueError as err:
                raise ValueError(f"NablaConfig.{section}: {err}") from None
        return dataclasses.replace(self, **fields)

    @classmethod
    def from_settings(cls, **settings) -> "NablaConfig":
        """The defaults with ``settings`` (flat names or fields) on top."""
        return cls().replace(**settings)

    def settings(self) -> dict:
        """Every setting by its flat name."""
        return {name: (getattr(self, field) if section is None else getattr(getattr(self, section), field))
                for name, (section, field) in setting_names().items()}

    def changed_settings(self, base: "NablaConfig | None" = None) -> dict:
        """The flat settings that differ from ``base`` (default: the defaults)."""
        reference = (base or NablaConfig()).settings()
        return {name: value for name, value in self.settings().items() if value != reference[name]}

    @classmethod
    def preset(cls, name: str, **overrides) -> "NablaConfig":
        """An official script's settings (``official-math500``, ``official-aime``, ``official-amc``,
        ``official-readme``; see :mod:`nabla_jax.presets`), with ``overrides`` on top."""
        from nabla_jax.presets import preset

        return preset(name).replace(**overrides)


# sub-configurations and the prefix of their flat names; the resample's repetition penalty is not a setting (a
# proposal samples one token from DTO's logits, with no history to penalise)
SECTIONS = {"dto": "", "rollout": "rollout_", "resample": "resample_"}
_NOT_SETTINGS = {("resample", "repetition_penalty")}
_FIELD_NAMES = {f.name for f in dataclasses.fields(NablaConfig)}


def setting_names() -> dict[str, tuple[str | None, str]]:
    """Flat name -> (section or None, field): the official code's names for every setting."""
    names = {}
    for field in dataclasses.fields(NablaConfig):
        if field.name in SECTIONS:
            for inner in dataclasses.fields(type(field.default)):
                if (field.name, inner.name) not in _NOT_SETTINGS:
                    names[SECTIONS[field.name] + inner.name] = (field.name, inner.name)
        else:
            names[field.name] = (None, field.name)
    return names


def setting_default(name: str):
    """The default value of the flat setting ``name``."""
    return NablaConfig().settings()[name]


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
    for section, kind in (("dto", DTOConfig), ("rollout", SamplingConfig), ("resample", SamplingConfig)):
        if not isinstance(getattr(config, section), kind):
            raise TypeError(f"NablaConfig.{section} must be a {kind.__name__}, got {getattr(config, section)!r}")
    if config.mix_beta is not None:
        if isinstance(config.mix_beta, bool) or not isinstance(config.mix_beta, (int, float)) or not (
                math.isfinite(config.mix_beta) and config.mix_beta >= 0):
            raise ValueError(f"NablaConfig.mix_beta must be None (off) or a finite number >= 0, got {config.mix_beta!r}")
        if config.use_dto:
            raise ValueError("NablaConfig.mix_beta replaces DTO's proposal: set use_dto=False with it")
    if config.resample.repetition_penalty not in (None, 1.0):
        raise ValueError("NablaConfig.resample.repetition_penalty must be 1 (a proposal has no history to penalise)")
