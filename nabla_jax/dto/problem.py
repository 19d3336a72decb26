"""One DTO problem as fixed-shape id buffers plus lengths, so it can be jitted and vmapped.

Buffers are right-padded; a length marks the real part. The ahead size A is the leading axis of the init variables,
and ``ahead_len <= A`` marks the real ahead tokens (positions past it contribute nothing).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.generation.buckets import pad_ids


class DTOProblem(NamedTuple):
    lm_prefix_ids: jax.Array  # [P] policy ids: chat-templated prompt + committed tokens
    lm_prefix_len: jax.Array  # () int32, >= 1
    ahead_len: jax.Array  # () int32, in [1, A]
    rm_prefix_ids: jax.Array  # [R] reward ids: reward template prefix + committed tokens (reward ids)
    rm_prefix_len: jax.Array  # () int32
    rm_postfix_ids: jax.Array  # [Q] reward ids: the template's closing tokens, e.g. <|im_end|>\n
    rm_postfix_len: jax.Array  # () int32
    rm_prefix_counted: jax.Array  # [R] bool: prefix slots the reward reads (a PRM's committed steps, a likelihood
    #                                reward's committed tokens; none for an outcome reward)


def make_problem(
    lm_prefix_ids: Sequence[int],
    ahead_len: int,
    rm_prefix_ids: Sequence[int] = (),
    rm_postfix_ids: Sequence[int] = (),
    sizes: tuple[int, int, int] | None = None,
    rm_prefix_counted: Sequence[bool] = (),
) -> DTOProblem:
    """Pad host id lists into a :class:`DTOProblem`; ``sizes = (P, R, Q)`` defaults to the exact lengths.
    ``rm_prefix_counted`` marks the reward-prefix slots the reward reads (see :func:`nabla_jax.rewards.inputs.prefix_input`)."""
    if len(lm_prefix_ids) == 0:
        raise ValueError(
            "the policy prefix is empty: DTO needs at least one prompt token to predict the first ahead token"
        )
    if ahead_len < 1:
        raise ValueError(f"the ahead sequence is empty (length {ahead_len}); there is nothing to optimise")
    if sizes is None:
        sizes = (len(lm_prefix_ids), max(1, len(rm_prefix_ids)), len(rm_postfix_ids))
    p, r, q = sizes
    return DTOProblem(
        lm_prefix_ids=jnp.asarray(pad_ids(lm_prefix_ids, p, "policy prefix")),
        lm_prefix_len=jnp.asarray(len(lm_prefix_ids), jnp.int32),
        ahead_len=jnp.asarray(ahead_len, jnp.int32),
        rm_prefix_ids=jnp.asarray(pad_ids(rm_prefix_ids, r, "reward prefix")),
        rm_prefix_len=jnp.asarray(len(rm_prefix_ids), jnp.int32),
        rm_postfix_ids=jnp.asarray(pad_ids(rm_postfix_ids, q, "reward postfix")),
        rm_postfix_len=jnp.asarray(len(rm_postfix_ids), jnp.int32),
        rm_prefix_counted=jnp.asarray(pad_ids(np.asarray(rm_prefix_counted, np.int32), r, "reward prefix mask") > 0),
    )


def stack(trees):
    """Stack per-problem pytrees (problems, init variables, states) along a new leading batch axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
