"""Per-problem statistics and the revision trace, read from a finished (host) decoder state.

Model calls, two ways:

- ``model_calls_official``: as the official code counts them: 1 per generated token, 4 per DTO step that ran the
  models (LM and RM forward and backward), 2 per acceptance test (and 1 per verifier pass of the mixture control).
- ``model_calls_full``: by the paper's own definition (one recurrent step or one parallel forward pass), adding
  every rollout's prefill (1 each), every gradient-selector pass (6 each) and the two frozen-prefix passes of every
  DTO call (2 each).

``flops`` estimates the useful work from the real lengths (:mod:`nabla_jax.models.flops`), not the padded shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Revision(NamedTuple):
    position: int  # index in the response of the revised token
    old_token: int
    new_token: int
    reward_current: float
    reward_proposed: float
    accepted: bool
    current: list[int]  # the current continuation from that position
    proposed: list[int]  # the new token and its rollout


def problem_stats(models, state, row: int, wall_time_s: float, batch_wall_time_s: float) -> dict:
    s = {name: int(np.asarray(value)[row]) for name, value in state.stats._asdict().items() if name != "flops"}
    s["flops"] = float(np.asarray(state.stats.flops)[row])
    s["rejection_rate"] = s["rejections"] / s["proposals"] if s["proposals"] else None
    s["model_calls_official"] = (s["generated_tokens"] + 4 * s["dto_full_steps"] + 2 * s["acceptance_tests"]
                                 + s["verifier_passes"])
    s["model_calls_full"] = (
        s["model_calls_official"] + s["rollouts"] + 6 * s["selector_passes"] + 2 * s["dto_runs"]
    )
    s["wall_time_s"] = wall_time_s
    s["batch_wall_time_s"] = batch_wall_time_s
    return s


def revisions(state, row: int) -> list[Revision]:
    events = state.events
    count = int(np.asarray(events.count)[row])
    out = []
    for k in range(count):
        out.append(
            Revision(
                position=int(events.position[row, k]),
                old_token=int(events.old_token[row, k]),
                new_token=int(events.new_token[row, k]),
                reward_current=float(events.reward_current[row, k]),
                reward_proposed=float(events.reward_proposed[row, k]),
                accepted=bool(events.accepted[row, k]),
                current=[int(t) for t in np.asarray(events.current[row, k, : events.current_len[row, k]])],
                proposed=[int(t) for t in np.asarray(events.proposed[row, k, : events.proposed_len[row, k]])],
            )
        )
    return out
