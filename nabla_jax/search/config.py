"""``SearchConfig``: the static settings of a reward-guided step-level search (beam search, diverse verifier tree
search, particle filtering)."""

from __future__ import annotations

import dataclasses
import math

from nabla_jax.generation.sampling import SamplingConfig

BEAM, DVTS, PARTICLES = "beam", "dvts", "pf"
SEARCHES = (BEAM, DVTS, PARTICLES)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Static (hashable) settings; a ``jax.jit`` static argument.

    - ``method``: ``"beam"`` keeps the ``n / width`` best beams by the step score and expands each ``width`` ways;
      ``"dvts"`` runs ``n / width`` independent subtrees, each keeping its best beam and expanding it ``width``
      ways; ``"pf"`` resamples ``n`` particles in proportion to ``softmax(step score / pf_temperature)``.
    - ``beam_width`` (M) is capped at ``n``; ``n`` must then be a multiple of it.
    - ``max_steps``: the most steps a search takes (None: ``max_new_tokens``, as every step adds a token).
    """

    method: str = BEAM
    n: int = 4
    beam_width: int = 4
    pf_temperature: float = 1.0
    max_new_tokens: int = 1024
    sampling: SamplingConfig = SamplingConfig()
    max_steps: int | None = None

    def __post_init__(self):
        if self.method not in SEARCHES:
            raise ValueError(f"SearchConfig.method must be one of {SEARCHES}, got {self.method!r}")
        for name in ("n", "beam_width", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SearchConfig.{name} must be an integer >= 1, got {value!r}")
        if self.n % self.width:
            raise ValueError(f"{self.method}@{self.n}: n must be a multiple of the beam width {self.width} "
                             "(--beam-width)")
        temperature = self.pf_temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
                math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"SearchConfig.pf_temperature must be a finite number > 0, got {temperature!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"SearchConfig.max_steps must be None or an integer >= 1, got {self.max_steps!r}")

    @property
    def width(self) -> int:
        """M, capped at n."""
        return min(self.beam_width, self.n)

    @property
    def groups(self) -> int:
        """Independent groups the rows are selected in: one for beam search and particles, n / M subtrees for dvts."""
        return self.n // self.width if self.method == DVTS else 1

    @property
    def keep(self) -> int:
        """Beams each group keeps per step (beam: n / M; dvts: 1)."""
        return self.n // self.width if self.method == BEAM else 1

    @property
    def steps(self) -> int:
        return self.max_new_tokens if self.max_steps is None else self.max_steps

    def replace(self, **changes) -> "SearchConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class GuidedConfig:
    """Static settings of reward-guided token decoding (ARGS): at each token the policy's ``k`` most likely
    tokens are rescored by ``logit + weight * reward(response with the token)`` and the best is taken."""

    k: int = 4
    weight: float = 1.0
    max_new_tokens: int = 1024

    def __post_init__(self):
        for name in ("k", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GuidedConfig.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not math.isfinite(self.weight):
            raise ValueError(f"GuidedConfig.weight must be a finite number, got {self.weight!r}")
