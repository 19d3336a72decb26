"""The ∇-Reasoner decoding loop over a batch of problems: ``(init, step)`` over a fixed-shape state, run by
``lax.while_loop`` inside one ``jit``.

One iteration, for every problem still decoding (paper.md §2.2):

1. budget: at ``max_n_generations`` rollouts, commit the ahead rollout and stop;
2. selection: commit the ahead tokens before the first that passes the selection tests;
3. DTO on the ahead variables (unless ``use_dto=False``);
4. resample the first ahead token from the optimised logits;
5. if it differs, roll out; keep the proposal only if its reward is higher.

A problem's tokens never depend on its batch: a phase runs once per batch when any problem needs it; the others
discard its result. :func:`nabla_step` composes the transitions (rationale: docs/design-notes.md).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nabla_jax.dto.loop import dto_run, dto_seed, seeding_applies
from nabla_jax.dto.models import ModelPair
from nabla_jax.dto.prefix_cache import PrefixCache, ahead_sizes, policy_prefix_from_rollout
from nabla_jax.dto.probes import Probes
from nabla_jax.dto.variables import to_logits
from nabla_jax.generation.rollouts import FINISH_NONFINITE, Rollout, RolloutSpec, rollout_rows
from nabla_jax.generation.sampling import sample_token
from nabla_jax.models import decoder
from nabla_jax.models.kv_cache import prefixes_as_stacked
from nabla_jax.reasoner import phases
from nabla_jax.reasoner.config import NablaConfig
from nabla_jax.reasoner.problem import NablaProblem, response_reward
from nabla_jax.reasoner.state import NablaState
from nabla_jax.rows import (
    add_row_axis, compaction_chunk, drop_row_axis, when_any_fits, when_any_rows, where_rows,
)


class Kernel(NamedTuple):
    """The frozen models and static settings of one decode, bundled once and handed to every transition."""

    models: ModelPair
    cfg: NablaConfig
    spec: RolloutSpec
    rm_pad: int  # the reward model's pad id (reward inputs are padded with it)
    chunk: int  # rows per chunk of the expensive phases (rows.when_any_rows)
    lm_layers: tuple  # the policy's per-layer params (decoder.split_layers), split once for the whole decode
    ahead_sizes: tuple[int, ...]  # the ahead buffers a selector pass or a DTO full step may run over


def make_kernel(models: ModelPair, cfg: NablaConfig, spec: RolloutSpec, rm_pad: int, rows: int) -> Kernel:
    """The kernel of a decode with ``rows`` row slots. The policy's layers are split here, once: every rollout of
    the decode reads them, where splitting inside each rollout copied all the kernels once per rollout (on
    SmolLM2 that copy cost more than the prefill; docs/performance-log.md). The selector's pass and DTO's full steps
    run over the smallest of :func:`ahead_sizes` that holds every row's ahead tokens: ``ahead_len`` shrinks as
    tokens are committed."""
    return Kernel(models, cfg, spec, rm_pad, compaction_chunk(rows), decoder.split_layers(models.lm_params),
                  ahead_sizes(cfg.max_new_tokens))


class Proposal(NamedTuple):
    """A resampled first ahead token and, where it differs from the rollout's, the rollout after it ([B] rows)."""

    token: jax.Array  # [B] int32: the resampled first ahead token
    old_token: jax.Array  # [B] int32: the rollout's
    position: jax.Array  # [B] int32: its index in the response
    proposing: jax.Array  # [B] bool: stepping and the token differs
    rollout: Rollout  # the proposal's rollout after the new token (zeros where not proposing)
    sequence: jax.Array  # [B, S] the proposed sequence
    length: jax.Array  # [B] response tokens of the proposal
    current_length: jax.Array  # [B] response tokens of the current sequence


class ProbeSeed(NamedTuple):
    """The gradient selector's results, for DTO runs that start where it ran."""

    probes: Probes  # [B] rows
    here: jax.Array  # [B] bool: the probe ran for the row and nothing was committed since


class Verdict(NamedTuple):
    reward_current: jax.Array  # [B] float32 (zeros without rejection sampling)
    reward_proposed: jax.Array
    accepted: jax.Array  # [B] bool


def _add(state: NablaState, **increments) -> NablaState:
    """``state`` with its statistics incremented."""
    stats = state.stats
    return state._replace(stats=stats._replace(**{k: getattr(stats, k) + v for k, v in increments.items()}))


def run_rollouts(k: Kernel, problems: NablaProblem, sequences, prefix_lens, budgets,
                 prefix: PrefixCache | None = None) -> tuple[Rollout, jax.Array]:
    """A rollout after each ``sequences[b, :prefix_lens[b]]``, keyed by the problem's rollout stream and its response
    length so far, for every row at once, in one batch-native rollout loop (rows with a budget of 0
    generate nothing and do not lengthen it); returns the rollouts and the new sequences ``[B, S]``. ``prefix``: the
    rows' carried prefix caches, whose policy keys/values hold every prefix token but the last, so only that one
    runs (no prefill)."""
    key_of = jax.vmap(lambda p, n: phases.stream_key(p, phases.ROLLOUT_STREAM, n))
    keys = key_of(problems, prefix_lens - problems.prompt_len)
    prompt_kv = None
    if prefix is not None:
        prompt_kv = prefixes_as_stacked(prefix.lm_kv, sequences.shape[1])
    lm = k.models
    out = rollout_rows(lm.lm_config, lm.lm_params, k.spec, sequences, prefix_lens, keys, budgets, problems.prompt_len,
                       layers=k.lm_layers, kv_slots=phases.rollout_kv_slots(k.cfg, sequences.shape[1]),
                       prompt_kv=prompt_kv)
    return out, out.sequence[:, : sequences.shape[1]]


def start_rows(k: Kernel, problems: NablaProblem, starting: jax.Array) -> NablaState:
    """Each starting row's first rollout and state (other rows get a rollout of 0 tokens)."""
    budgets = jnp.where(starting, k.cfg.max_new_tokens, 0)
    out, sequences = run_rollouts(k, problems, problems.prompt_ids, problems.prompt_len, budgets)
    return jax.vmap(lambda p, o, s: phases.start_state(k.models, k.cfg, p, o, s))(problems, out, sequences)


def nabla_init(k: Kernel, problems: NablaProblem) -> NablaState:
    return start_rows(k, problems, jnp.ones(problems.prompt_len.shape, bool))


def spend_budget(k: Kernel, state: NablaState) -> NablaState:
    """1. A problem whose rollouts reached ``max_n_generations`` commits its whole ahead rollout and stops."""
    active = ~state.done
    state = _add(state, iterations=active)
    spent = active & (state.stats.rollouts >= k.cfg.max_n_generations)
    if k.cfg.budget_check == "after":  # the official loop tests the budget only after an iteration has run
        spent &= state.stats.iterations > 1
    state = _add(state, budget_tokens=jnp.where(spent, state.ahead_len, 0))
    state = where_rows(spent, jax.vmap(phases.commit)(state, state.ahead_len), state)
    return state._replace(done=state.done | spent)


def refresh_prefix(k: Kernel, problems: NablaProblem, state: NablaState, wanted, logits) -> NablaState:
    """``state.prefix`` of every ``wanted`` row brought to its current prefix (``logits``: the rows' ahead logits,
    :func:`phases.ahead_logits`). With ``carry_prefix`` the policy runs no pass: its keys/values are the rollouts'
    own, which the state keeps (:func:`phases.start_state`, :func:`advance`), and the logits of the prefix's last
    token are the first ahead token's; the reward model runs over the tokens committed since the cache was built,
    or over its whole prefix where the row holds none yet (a new problem). Without it both models run over the
    whole prefix, as the official code does. Each part runs only for the chunks of rows that need it."""
    stale = wanted & (state.prefix_len != state.past_len)
    if k.cfg.carry_prefix:
        prefix, flops = _carried_prefix(k, problems, state, stale, logits)
    else:
        def build(problems, state):
            return jax.vmap(lambda p, s: phases.prefix_cache(k.models, p, s, k.rm_pad))(problems, state)

        prefix = where_rows(stale, when_any_rows(stale, build, k.chunk, problems, state), state.prefix)
        flops = jax.vmap(lambda p, s: phases.prefix_flops(k.models, p, s))(problems, state)
    state = _add(state, flops=jnp.where(stale, flops, 0.0))
    return state._replace(prefix=prefix, prefix_len=jnp.where(stale, state.past_len, state.prefix_len))


def _carried_prefix(k: Kernel, problems: NablaProblem, state: NablaState, stale, logits):
    """:func:`refresh_prefix` with ``carry_prefix``: the new prefix caches and the reward model's FLOPs."""
    last = jnp.where(stale[:, None], logits[:, 0], state.prefix.lm_last_logits)
    state = state._replace(prefix=state.prefix._replace(lm_last_logits=last))
    if not k.models.has_reward:
        return state.prefix, jnp.zeros(stale.shape, jnp.float32)
    fresh = stale & (state.prefix_len == 0)
    growing = stale & ~fresh

    def reward_side(fn):  # only the reward fields leave the branch: the policy's caches stay where they are
        def run(problems, state):
            cache = jax.vmap(lambda p, s: fn(k.models, p, s, k.rm_pad))(problems, state)
            return cache.rm_kv, cache.rm_prefix_share, cache.rm_last_hidden, cache.rm_slot_values
        return run

    fields = (state.prefix.rm_kv, state.prefix.rm_prefix_share, state.prefix.rm_last_hidden,
              state.prefix.rm_slot_values)
    fields = where_rows(fresh, when_any_rows(fresh, reward_side(phases.reward_prefix), k.chunk, problems, state),
                        fields)
    fields = where_rows(growing, when_any_rows(growing, reward_side(phases.extended_reward_prefix), k.chunk,
                                               problems, state), fields)
    rm_kv, share, last_hidden, values = fields
    prefix = state.prefix._replace(rm_kv=rm_kv, rm_prefix_share=share, rm_last_hidden=last_hidden,
                                   rm_slot_values=values)
    cost = jax.vmap(lambda p, s: jnp.where(s.prefix_len == 0, phases.reward_prefix_flops(k.models, p, s),
                                           phases.extension_flops(k.models, p, s)))
    return prefix, cost(problems, state)


def select_tokens(k: Kernel, problems: NablaProblem, state: NablaState):
    """2. Commit the ahead tokens before the first one that passes the selection tests (rollout reuse); returns
    the state, the ahead logits from the new first ahead token on, and the gradient selector's :class:`ProbeSeed`
    (None without that selector or with ``reuse_probe_gradient=False``)."""
    choosing = ~state.done
    logits = jax.vmap(phases.ahead_logits, in_axes=(None, 0))(k.models, state)
    grad_norm = probes = None
    if k.cfg.uses_grad_probe:
        state = refresh_prefix(k, problems, state, choosing, logits)

        def probe(size, problems, state, logits):  # over the first ``size`` slots (the smallest that fits)
            return jax.vmap(lambda p, s, lg: phases.gradient_probe(k.models, k.cfg, p, s, k.rm_pad, lg, size))(
                problems, state, logits)

        probes = when_any_fits(choosing, state.ahead_len, k.ahead_sizes, probe, problems, state, logits)
        grad_norm = probes.grad_norm
        cost = jax.vmap(lambda p, s: phases.probe_flops(k.models, p, s))
        state = _add(state, selector_passes=choosing, flops=jnp.where(choosing, cost(problems, state), 0.0))
    first_of = jax.vmap(lambda lg, g, n: phases.first_selected(k.cfg, lg, g, n),
                  in_axes=(0, None if grad_norm is None else 0, 0))
    first = first_of(logits, grad_norm, state.ahead_len)
    skip = jnp.where(choosing, first, 0)
    state = _add(jax.vmap(phases.commit)(state, skip), skipped_tokens=skip)
    logits = jax.vmap(lambda lg, p: jnp.roll(lg, -p, axis=0))(logits, skip)
    seed = None
    if probes is not None and k.cfg.reuse_probe_gradient and seeding_applies(k.cfg.dto):
        seed = ProbeSeed(probes, choosing & (skip == 0))
    return state._replace(done=state.done | (choosing & (state.ahead_len == 0))), logits, seed


def optimise(k: Kernel, problems: NablaProblem, state: NablaState, logits, seed: ProbeSeed | None = None):
    """3. DTO on the ahead variables of every stepping problem, the rows of ``seed.here`` starting from the gradient
    selector's first step; returns the state and the first ahead token's optimised logits (the rollout's own with
    ``use_dto=False``: blind resampling)."""
    if not k.cfg.use_dto:
        return mixture(k, problems, state, logits[:, 0]) if k.cfg.mix_beta is not None else (state, logits[:, 0])
    stepping = ~state.done
    state = refresh_prefix(k, problems, state, stepping, logits)

    def run(problems, state, logits, stepping, seed):
        start = jax.vmap(lambda p, s, lg: phases.dto_start(k.models, k.cfg, p, s, k.rm_pad, lg))
        dto_problems, dto_state = start(problems, state, logits)
        if seed is not None:  # the probe's pass is the first full step of the rows it ran for at this very state
            pr = seed.probes
            seed_rows = jax.vmap(functools.partial(dto_seed, k.cfg.dto))
            dto_state = seed_rows(dto_state, pr.loss, pr.loglik, pr.reward, pr.grad_y, seed.here)
        dto_state = dto_state._replace(step=jnp.where(stepping, 0, k.cfg.dto.max_iters).astype(jnp.int32))
        dto_state = dto_run(k.models, k.cfg.dto, dto_problems, state.prefix, dto_state, k.ahead_sizes)
        return jax.vmap(lambda v: to_logits(k.models, k.cfg.dto, v[0]))(dto_state.variables), dto_state

    first_logits, dto_state = when_any_rows(stepping, run, k.chunk, problems, state, logits, stepping, seed)
    full = jnp.where(stepping, dto_state.full_steps, 0)
    ran = full  # the model passes that ran (refresh_prefix counted the prefix's)
    if seed is not None:  # a seeded row did not run its first step
        ran = full - (stepping & seed.here).astype(full.dtype)
    flops = jax.vmap(lambda p, s, n: n * phases.probe_flops(k.models, p, s))
    state = _add(
        state,
        dto_runs=stepping,
        dto_full_steps=full,
        dto_cached_steps=jnp.where(stepping, dto_state.cached_steps, 0),
        dto_executed_steps=jnp.where(stepping, dto_state.executed_full_steps, 0),
        nonfinite=stepping & (dto_state.nonfinite_step >= 0),
        flops=jnp.where(stepping, flops(problems, state, ran), 0.0),
    )
    return state, first_logits


def mixture(k: Kernel, problems: NablaProblem, state: NablaState, first_logits):
    """3'. The gradient-free control: the first ahead token's logits plus ``mix_beta`` times the verifier's
    next-token log-probabilities (one verifier pass per stepping problem)."""
    stepping = ~state.done

    def run(problems, state):
        return jax.vmap(lambda p, s: phases.verifier_logprobs(k.models, p, s, k.rm_pad))(problems, state)

    logprobs = when_any_rows(stepping, run, k.chunk, problems, state)
    flops = jax.vmap(lambda p, s: phases.reward_prefix_flops(k.models, p, s))(problems, state)
    state = _add(state, verifier_passes=stepping, flops=jnp.where(stepping, flops, 0.0))
    return state, first_logits + k.cfg.mix_beta * jnp.where(stepping[:, None], logprobs, 0.0)


def propose(k: Kernel, problems: NablaProblem, state: NablaState, first_logits) -> tuple[NablaState, Proposal]:
    """4-5a. Resample the first ahead token; where it differs, roll out after it."""
    stepping = ~state.done
    position = state.past_len - problems.prompt_len
    keys = jax.vmap(lambda p, n: phases.stream_key(p, phases.RESAMPLE_STREAM, n))(problems, position)
    token = jax.vmap(lambda lg, key: sample_token(lg, key, k.cfg.resample))(first_logits, keys)
    old_token = jax.vmap(lambda s: s.sequence[s.past_len])(state)
    proposing = stepping & (token != old_token)

    def roll(problems, state, token, proposing):
        def budget_of(problem, s, t, wanted):
            sequence = s.sequence.at[s.past_len].set(t)
            # a problem that is not proposing gets no budget, so it does not lengthen the batch's rollout loop
            return sequence, jnp.where(wanted, phases.proposal_budget(k.cfg, k.spec, problem, s, t, sequence), 0)

        sequences, budgets = jax.vmap(budget_of)(problems, state, token, proposing)
        # the carried prefix holds the policy's keys/values of every token before the new one
        prefix = state.prefix if phases.carries_policy_kv(k.cfg) else None
        return run_rollouts(k, problems, sequences, state.past_len + 1, budgets, prefix)

    out, sequence = when_any_rows(proposing, roll, k.chunk, problems, state, token, proposing)
    cached = state.past_len if phases.carries_policy_kv(k.cfg) else jnp.zeros_like(state.past_len)
    cost = jax.vmap(lambda s, n, c: phases.rollout_flops(k.models, s.past_len + 1, n, c))(state, out.length, cached)
    state = _add(
        state,
        rollouts=proposing,
        proposals=proposing,
        generated_tokens=jnp.where(proposing, out.length, 0),
        nonfinite=proposing & (out.finish == FINISH_NONFINITE),
        flops=jnp.where(proposing, cost, 0.0),
    )
    proposal = Proposal(token, old_token, position, proposing, out, sequence, position + 1 + out.length,
                        position + state.ahead_len)
    return state, proposal


def judge(k: Kernel, problems: NablaProblem, state: NablaState, proposal: Proposal) -> tuple[NablaState, Verdict]:
    """5b. Keep a proposal only if its full-sequence reward is higher (always, without rejection sampling)."""
    proposing = proposal.proposing
    if not k.cfg.rejection_sampling:
        zeros = jnp.zeros(proposing.shape, jnp.float32)
        return state, Verdict(zeros, zeros, proposing)

    def compare(problems, current_sequence, current_length, sequence, length):
        score = jax.vmap(lambda p, seq, n: response_reward(k.models, p, seq, n, k.rm_pad, k.cfg.max_new_tokens))
        return score(problems, current_sequence, current_length), score(problems, sequence, length)

    current, proposed = when_any_rows(proposing, compare, k.chunk, problems, state.sequence,
                                      proposal.current_length, proposal.sequence, proposal.length)
    accepted = proposing & (proposed > current)
    cost = jax.vmap(lambda p, a, b: phases.score_flops(k.models, p, a) + phases.score_flops(k.models, p, b))
    state = _add(
        state,
        acceptance_tests=proposing,
        nonfinite=proposing & ~(jnp.isfinite(current) & jnp.isfinite(proposed)),
        flops=jnp.where(proposing, cost(problems, proposal.current_length, proposal.length), 0.0),
    )
    return state, Verdict(current, proposed, accepted)


def record_proposal(k: Kernel, state: NablaState, proposal: Proposal, verdict: Verdict) -> NablaState:
    """The proposal, its rollout and the verdict, appended to each proposing problem's event log."""
    n = k.cfg.max_new_tokens

    def window(seq, start, count):
        return jnp.where(jnp.arange(n) < count, jax.lax.dynamic_slice_in_dim(jnp.pad(seq, (0, n)), start, n), 0)

    def one(s: NablaState, p: Proposal, v: Verdict):
        events, slot = s.events, jnp.minimum(s.events.count, k.cfg.max_n_generations - 1)
        set_ = lambda field, value: getattr(events, field).at[slot].set(value)  # noqa: E731
        return events._replace(
            count=slot + 1, position=set_("position", p.position), old_token=set_("old_token", p.old_token),
            new_token=set_("new_token", p.token), reward_current=set_("reward_current", v.reward_current),
            reward_proposed=set_("reward_proposed", v.reward_proposed), accepted=set_("accepted", v.accepted),
            current=set_("current", window(s.sequence, s.past_len, s.ahead_len)),
            proposed=set_("proposed", window(p.sequence, s.past_len, p.rollout.length + 1)),
            current_len=set_("current_len", s.ahead_len),
            proposed_len=set_("proposed_len", jnp.minimum(p.rollout.length + 1, n)),
        )

    events = where_rows(proposal.proposing, jax.vmap(one)(state, proposal, verdict), state.events)
    return state._replace(events=events)


def advance(state: NablaState, proposal: Proposal, verdict: Verdict) -> NablaState:
    """6. Take an accepted proposal, or commit the old first token and keep the old rollout."""
    stepping = ~state.done
    state = _add(state, rejections=proposal.proposing & ~verdict.accepted)
    taken = state._replace(
        sequence=proposal.sequence, past_len=state.past_len + 1, ahead_len=proposal.rollout.length,
        latents=proposal.rollout.latents,
    )
    if proposal.rollout.kv is not None:  # the policy's side of the prefix cache: the accepted rollout's keys/values
        taken = taken._replace(prefix=jax.vmap(policy_prefix_from_rollout)(state.prefix, proposal.rollout.kv))
    kept = jax.vmap(phases.commit)(state, jnp.ones_like(state.ahead_len))
    state = where_rows(verdict.accepted, taken, where_rows(stepping, kept, state))
    return state._replace(done=state.done | (stepping & (state.ahead_len == 0)))


def nabla_step(k: Kernel, problems: NablaProblem, state: NablaState) -> NablaState:
    """One iteration for every problem still decoding (the module docstring's steps 1-5). Each transition runs under
    its own ``jax.named_scope``, so profiles (``python -m experiments.profile_step``) attribute time to it."""
    with jax.named_scope("spend_budget"):
        state = spend_budget(k, state)
    with jax.named_scope("select_tokens"):
        state, logits, seed = select_tokens(k, problems, state)
    with jax.named_scope("optimise"):
        state, first_logits = optimise(k, problems, state, logits, seed)
    with jax.named_scope("propose"):
        state, proposal = propose(k, problems, state, first_logits)
    with jax.named_scope("judge"):
        state, verdict = judge(k, problems, state, proposal)
    with jax.named_scope("advance"):
        return advance(record_proposal(k, state, proposal, verdict), proposal, verdict)


def nabla_run(k: Kernel, problems: NablaProblem, state: NablaState) -> NablaState:
    return jax.lax.while_loop(lambda s: jnp.any(~s.done), lambda s: nabla_step(k, problems, s), state)



@functools.partial(jax.jit, static_argnames=("cfg", "spec", "rm_pad", "batch_cond"))
def decode_batch(
    models: ModelPair,
    cfg: NablaConfig,
    spec: RolloutSpec,
    rm_pad: int,
    problems: NablaProblem,
    batch_cond: bool = True,
) -> NablaState:
    """Decode a batch of problems to the end in one compiled program."""
    kernel = make_kernel(models, cfg, spec, rm_pad, problems.prompt_len.shape[0])
    if batch_cond:
        return without_prefix(nabla_run(kernel, problems, nabla_init(kernel, problems)))

    def single(problem):
        one = add_row_axis(problem)
        return drop_row_axis(without_prefix(nabla_run(kernel, one, nabla_init(kernel, one))))

    return jax.vmap(single)(problems)


def without_prefix(state: NablaState) -> NablaState:
    """A final state as results keep it: without the carried prefix cache (both models' keys and values)."""
    return state._replace(prefix=None)
