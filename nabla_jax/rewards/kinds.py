"""What kind of reward a reward model gives: static settings, hashable, so they are part of a jitted program.

- ``outcome``: a sequence classifier's raw score at the last real token (the judge reward too).
- ``process``: a step-level PRM. A step ends at a token of ``step_end_ids`` and at the response's last token; the
  PRM is read at an inserted ``separator_id`` when one is set, else at the step-end token. A step's score is the
  probability of label 1; ``aggregate`` combines the step scores.
- ``likelihood``: a causal LM's length-normalised log-probability of the response given the prompt, each token's
  floored at ``clip`` when set; ``target_gradient`` off: the gradient flows through context only, not targets.

Examples of each layout: docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses

OUTCOME, PROCESS, LIKELIHOOD = "outcome", "process", "likelihood"
KINDS = (OUTCOME, PROCESS, LIKELIHOOD)
AGGREGATES = ("min", "prod", "mean", "last")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()  # a reading option left to the checkpoint (None is a value: "no separator", "no clip")


@dataclasses.dataclass(frozen=True)
class RewardKind:
    name: str = OUTCOME
    aggregate: str = "min"
    step_end_ids: tuple[int, ...] = ()
    separator_id: int | None = None
    clip: float | None = None
    target_gradient: bool = True

    def __post_init__(self):
        if self.name not in KINDS:
            raise ValueError(f"reward kind must be one of {', '.join(KINDS)}, got {self.name!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"reward aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if self.clip is not None and not self.clip < 0:
            raise ValueError(f"the likelihood clip is a log-probability floor and must be < 0, got {self.clip}")
        if not self.target_gradient and self.name != LIKELIHOOD:
            raise ValueError(f"target_gradient applies to a likelihood reward only, not to a {self.name} reward")
        if self.name == PROCESS and not self.step_end_ids and self.separator_id is None:
            raise ValueError("a process reward needs step-end tokens or a separator token to find its steps")
        object.__setattr__(self, "step_end_ids", tuple(int(i) for i in self.step_end_ids))

    @property
    def inserts_separators(self) -> bool:
        return self.name == PROCESS and self.separator_id is not None

    def response_slots(self, tokens: int) -> int:
        """Slots ``tokens`` response tokens take in the reward input (a separator may follow each one)."""
        return 2 * tokens if self.inserts_separators else tokens

    def input_slots(self, prefix: int, response: int, postfix: int) -> int:
        """Slots of a whole reward input: template prefix, the response region, template postfix (lengths may be
        traced arrays)."""
        return prefix + self.response_slots(response) + postfix

    def describe(self) -> str:
        if self.name == PROCESS:
            where = "at inserted separators" if self.inserts_separators else "at step-end tokens"
            return f"process ({self.aggregate} over steps, read {where})"
        if self.name == LIKELIHOOD:
            floor = f", floored at {self.clip}" if self.clip is not None else ""
            context = "" if self.target_gradient else "; gradient through the context only"
            return f"likelihood (mean token log-prob{floor}{context})"
        return "outcome (score at the last token)"
