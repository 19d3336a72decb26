"""``dto_optimize``: DTO for one problem (or a list) from a loaded policy and reward model.

This is the convenience entry point (tokenises, pads, checks, raises). The decoding loop uses the pure functions
underneath: :func:`build_prefix_cache`, :func:`dto_init`, :func:`dto_run` / :func:`dto_step`,
:func:`selection_probes`, all over fixed-shape :class:`DTOProblem` buffers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nabla_jax.dto.config import DTOConfig
from nabla_jax.dto.loop import DTOState, dto_init, dto_run
from nabla_jax.dto.models import ModelPair, dto_models
from nabla_jax.dto.prefix_cache import build_prefix_cache
from nabla_jax.dto.problem import DTOProblem, make_problem, stack
from nabla_jax.generation.buckets import round_up
from nabla_jax.templates import chat_prompt_ids, reward_input_template, to_reward_ids
from nabla_jax.rewards.inputs import prefix_input
from nabla_jax.dto.loss import uses_reward
from nabla_jax.dto.variables import check_init_shape, to_logits
from nabla_jax.sharding import params_mesh, shard_batch
from nabla_jax.seeds import seed_key


class NonFiniteLossError(FloatingPointError):
    """The DTO loss or its gradient became NaN/inf; the message names the problem and the step."""


@dataclasses.dataclass(frozen=True, eq=False)
class DTOResult:
    """One problem's DTO outcome (host arrays). M = 1 for ``update_positions="first"``, else the ahead length."""

    variables: np.ndarray  # [M, V] logits or [M, d] latents, float32
    logits: np.ndarray  # [M, V] float32 logits of the moving positions (resample the first token from row 0)
    token_ids: np.ndarray  # [ahead_len] argmax of every ahead position after DTO
    init_token_ids: np.ndarray  # [ahead_len] argmax of the init variables
    full_steps: int  # steps that ran both models (own need; the official num_grad_steps)
    cached_steps: int  # steps served by the cached dL/dy
    executed_full_steps: int  # steps on which the models actually ran for this problem (>= full_steps in a batch)
    loss: float  # loss at the last full step's one-hots
    loglik: float  # sum_i log p(y_i | y_<i) at those one-hots
    reward: float  # raw reward score at those one-hots
    loss_trace: np.ndarray  # [max_iters]
    relaxed_trace: np.ndarray  # [max_iters]

    @property
    def model_calls(self) -> int:
        """As the official code counts them: 4 per full step (LM and RM forward and backward)."""
        return 4 * self.full_steps


@functools.partial(jax.jit, static_argnames=("config", "reuse_prefix"))
def run_dto_batch(
    models: ModelPair,
    config: DTOConfig,
    problems: DTOProblem,
    init: jax.Array,
    keys: jax.Array,
    reuse_prefix: bool = True,
) -> tuple[DTOState, jax.Array, jax.Array]:
    """Jitted DTO over a batch: ``(final state, logits of the moving positions [B, M, V], init argmax [B, A])``.

    ``reuse_prefix=False`` re-runs the whole sequence at every full step (the official code's cost; for benchmarks).
    """
    ahead = init.shape[1]
    caches = jax.vmap(lambda p: build_prefix_cache(models, p, ahead))(problems) if reuse_prefix else None
    state = jax.vmap(lambda p, x, k: dto_init(models, config, p, x, k))(problems, init, keys)
    init_ids = state.token_ids
    state = dto_run(models, config, problems, caches, state)
    logits = jax.vmap(lambda v: to_logits(models, config, v))(state.variables)
    return state, logits, init_ids


def raise_if_nonfinite(state: DTOState, config: DTOConfig) -> None:
    """Raise :class:`NonFiniteLossError` for the first row of a batched state that stopped on a non-finite value."""
    steps = np.asarray(jax.device_get(state.nonfinite_step)).reshape(-1)
    for i, bad in enumerate(steps):
        if bad >= 0:
            loss = float(np.asarray(state.loss).reshape(-1)[i])
            raise NonFiniteLossError(
                f"DTO problem {i}: the loss or its gradient became non-finite at step {int(bad)} of "
                f"{config.max_iters} (loss {loss}); its variables were left at their last finite values. "
                "Check the init variables, the models' dtype (overflow) and the learning rate"
            )


def _as_batch(prompt, committed_ids, ahead_ids, init):
    if isinstance(prompt, str):
        return [prompt], [committed_ids], [ahead_ids], [init], True
    prompts = list(prompt)
    lists = [list(committed_ids), list(ahead_ids), list(init)]
    if any(len(x) != len(prompts) for x in lists):
        raise ValueError(
            f"batch sizes differ: {len(prompts)} prompts, {len(lists[0])} committed, {len(lists[1])} ahead, "
            f"{len(lists[2])} init"
        )
    return prompts, *lists, False


def dto_optimize(
    policy,
    reward,
    prompt: str | Sequence[str],
    committed_ids,
    ahead_ids,
    init,
    config: DTOConfig = DTOConfig(),
    *,
    models: ModelPair | None = None,
    seed: int = 0,
    min_vocab_overlap: float = 0.9,
    system_prompt: str | None = None,
    reuse_prefix: bool = True,
) -> DTOResult | list[DTOResult]:
    """Refine the ahead rollout of ``prompt`` by DTO.

    - ``policy``/``reward``: from :func:`nabla_jax.load_policy` / :func:`nabla_jax.load_reward` (``reward`` may be
      None: likelihood only). Their vocabularies are aligned by token string (pass ``models=dto_models(...)`` to do
      that once for many calls).
    - ``prompt``: the user message; the policy sees its chat template with the generation prompt, the reward model
      its own template around the response.
    - ``committed_ids``: policy ids already generated (may be empty); ``ahead_ids``: the rollout after them (>= 1).
    - ``init``: the rollout's variables for every ahead token, ``[len(ahead_ids), V]`` logits or
      ``[len(ahead_ids), d]`` final hidden states (after the last norm), per ``config.embedder``.

    A list of prompts (with lists for the other three) runs as one jitted batch and returns a list.
    The forward one-hots are the argmax of the variables (as in the official code), which can differ from a sampled
    ``ahead_ids``; ``init_token_ids`` reports them.
    """
    if not isinstance(config, DTOConfig):
        raise TypeError(f"config must be a DTOConfig, got {type(config).__name__}")
    prompts, committed, ahead, inits, single = _as_batch(prompt, committed_ids, ahead_ids, init)
    if models is None:
        models = dto_models(policy, reward, min_vocab_overlap)
    if uses_reward(models, config) and reward is None:
        raise ValueError("models has a reward model but reward is None; its tokenizer is needed for the template")
    rows = [
        _problem_row(i, models, config, policy, reward, text, done, rollout, x, system_prompt)
        for i, (text, done, rollout, x) in enumerate(zip(prompts, committed, ahead, inits))
    ]
    state, logits, init_ids = _run_rows(models, config, rows, seed, reuse_prefix)
    raise_if_nonfinite(state, config)
    results = [_result(config, row, i, state, logits, init_ids) for i, row in enumerate(rows)]
    return results[0] if single else results


class _Row(NamedTuple):
    """One DTO problem on the host, before padding."""

    lm_prefix: list[int]  # the policy's chat prompt and the committed ids
    ahead_len: int
    rm_prefix: list[int]  # the reward input before the ahead tokens (template and committed ids)
    rm_postfix: list[int]
    init: np.ndarray  # [ahead_len, X] the rollout's variables
    rm_prefix_counted: list  # which rm_prefix slots a process/likelihood reward reads


def _problem_row(i, models, config, policy, reward, text, committed, ahead, init, system_prompt) -> _Row:
    """Check one problem's ids and init, and build its prefixes from the two templates."""
    vocab = models.vocab_size
    committed = np.asarray(committed, np.int64).reshape(-1)
    ahead = np.asarray(ahead, np.int64).reshape(-1)
    init = np.asarray(init)
    if ahead.size == 0:
        raise ValueError(f"DTO problem {i}: the ahead sequence is empty; there is nothing to optimise")
    for name, ids in (("committed_ids", committed), ("ahead_ids", ahead)):
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"DTO problem {i}: {name} has ids outside the policy vocabulary [0, {vocab})")
    check_init_shape(models, config, init.shape, where=f"DTO problem {i}: init")
    if init.shape[0] != ahead.size:
        raise ValueError(f"DTO problem {i}: init has {init.shape[0]} positions but ahead_ids has {ahead.size} tokens")
    lm_prefix = chat_prompt_ids(policy.tokenizer, text, system_prompt) + committed.tolist()
    rm_prefix, rm_postfix, counted = [], [], ()
    if uses_reward(models, config):
        template, rm_postfix = reward_input_template(reward, text)
        committed_rm = to_reward_ids(models.reward_index, committed)
        rm_prefix, counted = prefix_input(models.reward_kind, template, committed_rm)
    return _Row(lm_prefix, int(ahead.size), rm_prefix, rm_postfix, init, counted)


def _run_rows(models, config, rows: list[_Row], seed: int, reuse_prefix: bool):
    """Pad the rows to shared buckets and run them as one jitted batch: ``(state, logits, init ids)`` on the host."""
    sizes = (
        round_up(max(len(r.lm_prefix) for r in rows), 32),
        round_up(max(len(r.rm_prefix) for r in rows), 32),
        round_up(max(len(r.rm_postfix) for r in rows), 8),
    )
    ahead_size = round_up(max(r.ahead_len for r in rows), 8)
    problems = stack([
        make_problem(r.lm_prefix, r.ahead_len, r.rm_prefix, r.rm_postfix, sizes, r.rm_prefix_counted) for r in rows
    ])
    init_batch = jnp.stack(
        [jnp.pad(jnp.asarray(r.init, jnp.float32), ((0, ahead_size - r.ahead_len), (0, 0))) for r in rows]
    )
    base = jax.random.key_data(seed_key(seed))
    keys = jnp.stack([jax.random.fold_in(base, i) for i in range(len(rows))])
    problems, init_batch, keys = shard_batch((problems, init_batch, keys), params_mesh(models.lm_params))
    return jax.device_get(run_dto_batch(models, config, problems, init_batch, keys, reuse_prefix))


def _result(config, row: _Row, i: int, state, logits, init_ids) -> DTOResult:
    n = row.ahead_len
    m = state.variables.shape[1] if config.update_positions == "first" else n
    return DTOResult(
        variables=np.asarray(state.variables[i, :m]),
        logits=np.asarray(logits[i, :m]),
        token_ids=np.asarray(state.token_ids[i, :n]),
        init_token_ids=np.asarray(init_ids[i, :n]),
        full_steps=int(state.full_steps[i]),
        cached_steps=int(state.cached_steps[i]),
        executed_full_steps=int(state.executed_full_steps[i]),
        loss=float(state.loss[i]),
        loglik=float(state.loglik[i]),
        reward=float(state.reward[i]),
        loss_trace=np.asarray(state.loss_trace[i]),
        relaxed_trace=np.asarray(state.relaxed_trace[i]),
    )
