"""The pieces of one ∇-Reasoner iteration, each a pure function of ONE problem (no batch axis).

The batched loop (:mod:`nabla_jax.reasoner.loop`) vmaps them and decides, once per batch, whether the expensive
ones run at all; the eager reference in the tests calls them one problem at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nabla_jax.dto.loop import dto_init
from nabla_jax.dto.models import ModelPair
from nabla_jax.dto.prefix_cache import (
    build_prefix_cache, build_reward_prefix, extend_reward_prefix, policy_prefix_from_rollout,
)
from nabla_jax.dto.probes import selection_probes, token_confidence
from nabla_jax.dto.problem import DTOProblem
from nabla_jax.generation.rollouts import FINISH_NONFINITE, RolloutSpec, stop_match
from nabla_jax.models import decoder
from nabla_jax.models.flops import decode_flops, dto_step_flops, forward_flops
from nabla_jax.reasoner.config import NablaConfig
from nabla_jax.reasoner.problem import NablaProblem, committed_reward_prefix
from nabla_jax.reasoner.state import NablaState, empty_events, empty_stats

# streams of the problem's key: each use is keyed by (stream, committed response length), as the official code
# seeds by base seed + generation length, so a problem's randomness never depends on its batch
ROLLOUT_STREAM, RESAMPLE_STREAM, DTO_STREAM = 0, 1, 2

# slots per forward when a carried prefix is extended (an iteration commits a token or a few): a small window costs
# about what one decode step costs, where a window of the whole ahead buffer ran as many slots as a rebuild
PREFIX_WINDOW = 4


def stream_key(problem: NablaProblem, stream: int, position) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(problem.key, stream), position)


def response_slots(state: NablaState) -> int:
    """The longest response (``max_new_tokens``): the ahead buffer's slots."""
    return state.latents.shape[0]


def response_len(problem: NablaProblem, state: NablaState) -> jax.Array:
    """Committed response tokens."""
    return state.past_len - problem.prompt_len


def rollout_flops(models: ModelPair, prefix_len, generated, cached=0) -> jax.Array:
    """A rollout after ``prefix_len`` tokens, the keys/values of the first ``cached`` of them given."""
    return decode_flops(models.lm_config, prefix_len, generated, cached)


def start_state(models: ModelPair, cfg: NablaConfig, problem: NablaProblem, out, sequence) -> NablaState:
    """The state after the first rollout ``out`` (which wrote ``sequence``)."""
    stats = empty_stats()._replace(
        rollouts=jnp.ones((), jnp.int32),
        generated_tokens=out.length,
        nonfinite=(out.finish == FINISH_NONFINITE).astype(jnp.int32),
        flops=rollout_flops(models, problem.prompt_len, out.length).astype(jnp.float32),
    )
    state = NablaState(
        sequence=sequence,
        past_len=problem.prompt_len,
        ahead_len=out.length,
        latents=out.latents,
        done=out.length == 0,
        stats=stats,
        events=empty_events(cfg.max_n_generations, cfg.max_new_tokens),
    )
    if not uses_prefix(cfg):
        return state
    shapes = jax.eval_shape(lambda: prefix_cache(models, problem, state, 0))
    prefix = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    if carries_policy_kv(cfg):
        prefix = policy_prefix_from_rollout(prefix, out.kv)
    return state._replace(prefix_len=jnp.zeros((), jnp.int32), prefix=prefix)


def uses_prefix(cfg: NablaConfig) -> bool:
    """Whether an iteration reads the prefix cache (DTO or the gradient selector)."""
    return cfg.use_dto or cfg.uses_grad_probe


def carries_policy_kv(cfg: NablaConfig) -> bool:
    """Whether the prefix cache's policy side is the rollouts' own keys/values (``carry_prefix``): the rollout
    whose tokens the state holds computed them for every committed token already."""
    return cfg.carry_prefix and uses_prefix(cfg)


def rollout_kv_slots(cfg: NablaConfig, sequence_slots: int) -> int | None:
    """Positions of a rollout's keys/values the state keeps (the prefix cache's policy buffer: the sequence buffer
    plus the ahead inputs), or None when it keeps none."""
    return sequence_slots + cfg.max_new_tokens - 1 if carries_policy_kv(cfg) else None


def commit(state: NablaState, count) -> NablaState:
    """Move ``count`` ahead tokens into the committed part (they keep their rollout tokens)."""
    count = jnp.minimum(count, state.ahead_len)
    return state._replace(
        past_len=state.past_len + count,
        ahead_len=state.ahead_len - count,
        latents=jnp.roll(state.latents, -count, axis=0),
    )


def ahead_logits(models: ModelPair, state: NablaState) -> jax.Array:
    """``[N, V]`` float32: the distributions the ahead tokens were sampled from."""
    return decoder.lm_logits(models.lm_config, models.lm_params, state.latents)


def ahead_variables(cfg: NablaConfig, state: NablaState, logits: jax.Array) -> jax.Array:
    """DTO's init variables ``[N, X]``: the ahead latents, or their logits ``logits`` (:func:`ahead_logits`, which an
    iteration computes once and hands to every phase)."""
    return state.latents.astype(jnp.float32) if cfg.dto.embedder == "latents" else logits


def dto_problem(models: ModelPair, problem: NablaProblem, state: NablaState, rm_pad: int) -> DTOProblem:
    """The :class:`DTOProblem` of the current prefix and ahead rollout."""
    rm_prefix = committed_reward_prefix(models, problem, state.sequence, state.past_len, rm_pad,
                                        response_slots(state))
    return DTOProblem(
        lm_prefix_ids=state.sequence,
        lm_prefix_len=state.past_len,
        ahead_len=jnp.maximum(state.ahead_len, 1),
        rm_prefix_ids=rm_prefix.ids,
        rm_prefix_len=rm_prefix.length,
        rm_postfix_ids=problem.rm_postfix_ids,
        rm_postfix_len=problem.rm_postfix_len,
        rm_prefix_counted=rm_prefix.counted,
    )


def prefix_cache(models: ModelPair, problem: NablaProblem, state: NablaState, rm_pad: int):
    """Both models' keys/values of the current prefix, as DTO and the gradient selector read it."""
    return build_prefix_cache(models, dto_problem(models, problem, state, rm_pad), state.latents.shape[0])


def reward_prefix(models: ModelPair, problem: NablaProblem, state: NablaState, rm_pad: int):
    """``state.prefix`` with its reward side built whole for the current prefix (a new problem's first one, where
    the policy's side comes from the rollouts: :func:`carries_policy_kv`)."""
    dto = dto_problem(models, problem, state, rm_pad)
    return build_reward_prefix(models, dto, state.prefix, state.latents.shape[0])


def extended_reward_prefix(models: ModelPair, problem: NablaProblem, state: NablaState, rm_pad: int):
    """``state.prefix`` (built at ``state.prefix_len`` > 0) with its reward side extended to the current prefix:
    only the tokens committed since run. The reward prefix of a response that goes on only grows
    (``reward_input(final=False)``: a separator follows a step-end token at once), so it runs from the old
    prefix's length."""
    old = committed_reward_prefix(models, problem, state.sequence, state.prefix_len, rm_pad,
                                  response_slots(state)).length
    window = min(PREFIX_WINDOW, state.latents.shape[0])
    return extend_reward_prefix(models, dto_problem(models, problem, state, rm_pad), state.prefix, old, window)


def verifier_logprobs(models: ModelPair, problem: NablaProblem, state: NablaState, rm_pad: int) -> jax.Array:
    """``[V_policy]`` the likelihood reward's LM's log-probability of each next token after its template and the
    committed response (one forward over that prefix), indexed by policy id: the mixture control's second term."""
    dto = dto_problem(models, problem, state, rm_pad)
    ids, length = dto.rm_prefix_ids, dto.rm_prefix_len
    valid = jnp.arange(ids.shape[0]) < length
    positions = jnp.maximum(jnp.cumsum(valid) - 1, 0)
    hidden, _ = decoder.forward(models.rm_config, models.rm_params, decoder.embed(models.rm_params, ids[None]),
                                positions[None], valid[None])
    logits = decoder.lm_logits(models.rm_config, models.rm_params, hidden[0, jnp.maximum(length - 1, 0)])
    return jax.nn.log_softmax(logits.astype(jnp.float32))[models.reward_index]


def gradient_probe(models: ModelPair, cfg: NablaConfig, problem: NablaProblem, state: NablaState, rm_pad: int,
                   logits: jax.Array, size: int | None = None):
    """The official gradient selector, one forward/backward over the ahead tokens after ``state.prefix`` (which must
    hold the current prefix; ``logits``: :func:`ahead_logits`), over the first ``size`` ahead slots when given (see
    :func:`nabla_jax.dto.loss.loss_and_onehot_grad`): :class:`Probes`. ``Probes.grad_norm`` is ``||dL/dy_i||`` at
    every ahead position; its loss and ``dL/dy`` are what a DTO run started at this state computes first
    (:func:`dto_start`)."""
    init = ahead_variables(cfg, state, logits)
    return selection_probes(models, cfg.dto, dto_problem(models, problem, state, rm_pad), state.prefix, init, size)


def dto_start(models: ModelPair, cfg: NablaConfig, problem: NablaProblem, state: NablaState, rm_pad: int,
              logits: jax.Array):
    """``(DTOProblem, DTOState)`` ready for ``dto_run`` over the prefix cache of :func:`prefix_cache`."""
    key = stream_key(problem, DTO_STREAM, response_len(problem, state))
    dto = dto_problem(models, problem, state, rm_pad)
    return dto, dto_init(models, cfg.dto, dto, ahead_variables(cfg, state, logits), key)


def first_selected(cfg: NablaConfig, logits: jax.Array, grad_norm: jax.Array | None, ahead_len) -> jax.Array:
    """Index of the first ahead position that passes every enabled test (``ahead_len`` when none does)."""
    real = jnp.arange(logits.shape[0]) < ahead_len
    selected = real
    if cfg.selection:
        top_prob, entropy = token_confidence(logits)
        if cfg.confidence_threshold is not None:
            selected &= top_prob <= cfg.confidence_threshold
        if cfg.entropy_threshold is not None:
            selected &= entropy >= cfg.entropy_threshold
        if cfg.grad_threshold is not None:
            selected &= grad_norm >= cfg.grad_threshold
    return jnp.where(jnp.any(selected), jnp.argmax(selected), ahead_len).astype(jnp.int32)


def proposal_budget(cfg: NablaConfig, spec: RolloutSpec, problem: NablaProblem, state: NablaState, token, sequence):
    """New tokens a proposal's rollout may generate: none after an EOS or a completed stop sequence."""
    slot = state.past_len
    ends = jnp.zeros((), bool)
    if spec.eos_ids:
        ends |= jnp.any(token == jnp.asarray(spec.eos_ids, jnp.int32))
    ends |= stop_match(sequence, slot, problem.prompt_len, spec.stop_sequences)
    room = cfg.max_new_tokens - (slot + 1 - problem.prompt_len)
    return jnp.where(ends, 0, room)


def reward_length(models: ModelPair, problem: NablaProblem, length) -> jax.Array:
    """Slots of a reward input for a response of ``length`` tokens (with a separator PRM's separators)."""
    return models.reward_kind.input_slots(problem.rm_prefix_len, length, problem.rm_postfix_len)


def probe_flops(models: ModelPair, problem: NablaProblem, state: NablaState) -> jax.Array:
    """One forward/backward of both models over the ahead tokens after their cached prefixes."""
    rm_prefix = problem.rm_prefix_len + state.past_len - problem.prompt_len
    flops = dto_step_flops(models.lm_config, models.rm_config, state.past_len, state.ahead_len, rm_prefix,
                           problem.rm_postfix_len)
    return flops.astype(jnp.float32)


def prefix_flops(models: ModelPair, problem: NablaProblem, state: NablaState) -> jax.Array:
    """The two frozen-prefix passes of a DTO call (or a selector pass), as the official code runs them."""
    rm_prefix = problem.rm_prefix_len + state.past_len - problem.prompt_len
    return (
        forward_flops(models.lm_config, state.past_len, 0, with_head=False)
        + forward_flops(models.rm_config, rm_prefix, 0, with_head=False)
    ).astype(jnp.float32)


def reward_prefix_flops(models: ModelPair, problem: NablaProblem, state: NablaState) -> jax.Array:
    """The reward model's pass over its whole prefix (:func:`reward_prefix`)."""
    rm_prefix = problem.rm_prefix_len + state.past_len - problem.prompt_len
    return forward_flops(models.rm_config, rm_prefix, 0, with_head=False).astype(jnp.float32)


def extension_flops(models: ModelPair, problem: NablaProblem, state: NablaState) -> jax.Array:
    """The reward model's pass over the tokens committed since ``state.prefix_len`` (:func:`extended_reward_prefix`)."""
    new = state.past_len - state.prefix_len
    rm_context = problem.rm_prefix_len + state.prefix_len - problem.prompt_len
    return forward_flops(models.rm_config, new, rm_context, with_head=False).astype(jnp.float32)


def score_flops(models: ModelPair, problem: NablaProblem, length) -> jax.Array:
    return forward_flops(models.rm_config, reward_length(models, problem, length), 0).astype(jnp.float32)
