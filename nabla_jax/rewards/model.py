"""``Reward``: a loaded reward model (config, params, tokenizer, its input template and its :class:`RewardKind`).

Built by :func:`nabla_jax.rewards.load_reward`; every consumer (DTO, the acceptance test, best-of-N, the records)
reads it through :mod:`nabla_jax.rewards.inputs` and :mod:`nabla_jax.rewards.readout` without knowing its kind.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from nabla_jax.loading import LoadedModel, ModelKindError, host_staging, place_params, resolve_checkpoint, token_batch
from nabla_jax.models import decoder
from nabla_jax.rewards.kinds import OUTCOME, RewardKind


@functools.partial(jax.jit, static_argnums=0)
def _scores(config, params, ids, mask):
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids), positions, mask)
    return decoder.score(config, params, hidden, mask)


@dataclasses.dataclass(frozen=True, eq=False)
class Reward(LoadedModel):
    """A reward model. ``score(token_ids, mask=None) -> [B]`` float32 (outcome kinds), taken at the last real token.

    ``template``, when set, is ``template(prompt, system) -> (prefix_ids, postfix_ids)``: the ids around the response
    in the reward model's input (default: its tokenizer's chat template with the response as the assistant turn)."""

    template: Any = None
    kind: RewardKind = RewardKind()

    def score(self, token_ids, mask=None) -> jax.Array:
        """Outcome scores of whole inputs. Other kinds score a response inside its template: use
        :func:`nabla_jax.rewards.score_batch`."""
        if self.kind.name != OUTCOME:
            raise ValueError(
                f"{self.source}: a {self.kind.name} reward scores a response, not a bare sequence; use "
                "nabla_jax.rewards.score_batch(reward, [(prefix_ids, response_ids, postfix_ids), ...], pad_id)"
            )
        ids, mask = token_batch(token_ids, mask)
        self._check_ids(ids)
        return _scores(self.config, self.params, ids, mask)[:, 0]


def checkpoint_reward(path: str, kind: RewardKind, dtype=None, mesh=None, allow_nonfinite: bool = False) -> Reward:
    """A classifier or PRM checkpoint as a :class:`Reward` of ``kind``; a causal LM is refused, naming the way to
    use it as a reward."""
    with host_staging(mesh):
        config, params, tokenizer = resolve_checkpoint(path, dtype, allow_nonfinite)
    if not config.is_reward_model:
        raise ModelKindError(
            f"{path} is a causal LM ({config.architecture}), not a reward model; load it with load_policy, or use "
            f"it as a likelihood reward (--reward likelihood:{path})"
        )
    return Reward(config, place_params(config, params, mesh), tokenizer, path, kind=kind)
