"""What a method's answer cost, counted the same way for every method.

* ``official_calls``: the official ∇-Reasoner code's count: 1 per generated token, 1 per sequence the reward model
  scores (and, for the ∇-Reasoner, 4 per non-cached DTO step and 2 per acceptance test).
* ``full_calls``: every pass by the paper's definition: the official count plus one prompt prefill per rollout (and
  the ∇-Reasoner's other passes), so a rollout of n tokens is n + 1 full calls.
* ``flops``: :mod:`nabla_jax.models.flops` estimates from the model configs.
* ``generated_tokens``: tokens the policy sampled, EOS included.

Costs add with ``+``; the ∇-Reasoner builds its own from the same helpers. The conventions in full:
docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses

from nabla_jax.models import flops as flop_model
from nabla_jax.models.config import DecoderConfig


@dataclasses.dataclass(frozen=True)
class Cost:
    official_calls: int = 0
    full_calls: int = 0
    flops: float = 0.0
    generated_tokens: int = 0
    rollouts: int = 0
    reward_calls: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


ZERO = Cost()


def total(costs) -> Cost:
    out = ZERO
    for cost in costs:
        out = out + cost
    return out


def rollout_cost(config: DecoderConfig, prompt_len: int, generated: int) -> Cost:
    """One rollout of ``generated`` tokens after a ``prompt_len``-token prompt."""
    return Cost(
        official_calls=generated,
        full_calls=generated + 1,
        flops=flop_model.decode_flops(config, prompt_len, generated),
        generated_tokens=generated,
        rollouts=1,
    )


def reward_cost(config: DecoderConfig, sequence_len: int) -> Cost:
    """One reward-model forward over a ``sequence_len``-token templated (prompt, response) pair."""
    return Cost(official_calls=1, full_calls=1, flops=flop_model.forward_flops(config, sequence_len), reward_calls=1)
