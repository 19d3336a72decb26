"""The ∇-Reasoner decoding loop over a batch of problems: ``(init, step)`` over a fixed-shape state, run by
``lax.while_loop`` inside one ``jit``.

One iteration, for every problem still decoding (paper.md §2.2, the official loop):

1. budget: when the rollout count has reached ``max_n_generations``, commit the whole ahead rollout and stop;
2. selection: commit the ahead tokens before the first one that passes the confidence / entropy / gradient tests
   (rollout reuse); stop when nothing is left;
3. DTO on the ahead variables (skipped with ``use_dto=False``: blind resampling from the rollout's own logits);
4. resample the first ahead token from the optimised logits;
5. if it differs: roll out from the prefix plus the new token; keep the proposal only if its full-sequence reward is
   higher (always, with ``rejection_sampling=False``); otherwise commit the old first token and keep the old rollout.

Batches. The per-problem pieces are vmapped; under ``vmap`` a per-problem ``lax.cond`` would become a ``select``
that runs both branches (jax-ml/jax#8409), so the loop instead decides once per batch: the gradient selector, DTO,
the proposal rollouts and the reward comparisons each run only when at least one problem needs them, and problems
that do not need them discard the result. A problem's tokens therefore never depend on its batch (its randomness
comes from its own key), but a batch pays for its slowest member: every active problem waits while another one's
rollout runs. ``batch_cond=False`` vmaps the single-problem loop instead (both branches always run), which the
benchmark compares.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nabla_jax.dto.loop import dto_run
from nabla_jax.dto.models import DTOModels
from nabla_jax.dto.variables import to_logits
from nabla_jax.generation.rollouts import FINISH_NONFINITE, RolloutSpec
from nabla_jax.generation.sampling import sample_token
from nabla_jax.reasoner import phases
from nabla_jax.reasoner.config import NablaConfig
from nabla_jax.reasoner.problem import NablaProblem, response_reward
from nabla_jax.reasoner.state import NablaState


def _where(mask, new, old):
    """Per-problem select over pytrees with a leading batch axis."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o), new, old)


def _when_any(mask, fn, *args):
    """``fn(*args)`` if any row of ``mask`` is set, else zeros of the same structure (nothing runs)."""
    shapes = jax.eval_shape(fn, *args)
    zeros = lambda *_: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return jax.lax.cond(jnp.any(mask), lambda *a: fn(*a), zeros, *args)


def nabla_init(models: DTOModels, cfg: NablaConfig, spec: RolloutSpec, problems: NablaProblem) -> NablaState:
    return jax.vmap(lambda p: phases.initial_state(models, cfg, spec, p))(problems)


def nabla_step(
    models: DTOModels, cfg: NablaConfig, spec: RolloutSpec, rm_pad: int, problems: NablaProblem, state: NablaState
) -> NablaState:
    vm = jax.vmap
    active = ~state.done
    stats = state.stats._replace(iterations=state.stats.iterations + active)

    # 1. rollout budget spent: commit the rest
    spent = active & (stats.rollouts >= cfg.max_n_generations)
    if cfg.budget_check == "after":  # the official loop tests the budget only after an iteration has run
        spent &= stats.iterations > 1
    stats = stats._replace(budget_tokens=stats.budget_tokens + jnp.where(spent, state.ahead_len, 0))
    state = _where(spent, vm(phases.commit)(state, state.ahead_len), state)
    state = state._replace(done=state.done | spent)
    choosing = ~state.done

    # 2. selection, from the rollout's logits (and one gradient pass when the gradient test is on)
    logits = vm(phases.ahead_logits, in_axes=(None, 0))(models, state)
    grad_norm = None
    if cfg.uses_grad_probe:
        grad_norm = _when_any(
            choosing, vm(lambda p, s: phases.gradient_norms(models, cfg, p, s, rm_pad)), problems, state
        )
        stats = stats._replace(
            selector_passes=stats.selector_passes + choosing,
            flops=stats.flops
            + jnp.where(
                choosing,
                vm(lambda p, s: phases.probe_flops(models, p, s) + phases.prefix_flops(models, p, s))(problems, state),
                0.0,
            ),
        )
    first = vm(lambda lg, g, n: phases.first_selected(cfg, lg, g, n), in_axes=(0, 0 if grad_norm is not None else None, 0))(
        logits, grad_norm, state.ahead_len
    )
    skip = jnp.where(choosing, first, 0)
    stats = stats._replace(skipped_tokens=stats.skipped_tokens + skip)
    state = vm(phases.commit)(state, skip)
    logits = vm(lambda lg, p: jnp.roll(lg, -p, axis=0))(logits, skip)
    state = state._replace(done=state.done | (choosing & (state.ahead_len == 0)))
    stepping = ~state.done

    # 3. DTO on the ahead variables
    if cfg.use_dto:
        def optimise(problems, state):
            dto_problems, caches, dto_state = vm(lambda p, s: phases.dto_start(models, cfg, p, s, rm_pad))(problems, state)
            dto_state = dto_state._replace(step=jnp.where(stepping, 0, cfg.max_iters).astype(jnp.int32))
            dto_state = dto_run(models, cfg.dto, dto_problems, caches, dto_state)
            first_logits = vm(lambda v: to_logits(models, cfg.dto, v[0]))(dto_state.variables)
            return first_logits, dto_state

        first_logits, dto_state = _when_any(stepping, optimise, problems, state)
        full = jnp.where(stepping, dto_state.full_steps, 0)
        dto_flops = vm(
            lambda p, s, n: phases.prefix_flops(models, p, s) + n * phases.probe_flops(models, p, s)
        )(problems, state, full)
        stats = stats._replace(
            dto_runs=stats.dto_runs + stepping,
            dto_full_steps=stats.dto_full_steps + full,
            dto_cached_steps=stats.dto_cached_steps + jnp.where(stepping, dto_state.cached_steps, 0),
            dto_executed_steps=stats.dto_executed_steps + jnp.where(stepping, dto_state.executed_full_steps, 0),
            nonfinite=stats.nonfinite + (stepping & (dto_state.nonfinite_step >= 0)),
            flops=stats.flops + jnp.where(stepping, dto_flops, 0.0),
        )
    else:
        first_logits = logits[:, 0]

    # 4. resample the first ahead token
    positions = state.past_len - problems.prompt_len
    keys = vm(lambda p, n: phases.stream_key(p, phases.RESAMPLE_STREAM, n))(problems, positions)
    new_token = vm(lambda lg, k: sample_token(lg, k, cfg.resample_sampling))(first_logits, keys)
    old_token = vm(lambda s: s.sequence[s.past_len])(state)
    proposing = stepping & (new_token != old_token)

    # 5. proposal rollout and acceptance test
    def propose(problems, state, token):
        def one(problem, s, t, wanted):
            sequence = s.sequence.at[s.past_len].set(t)
            # a problem that is not proposing gets no budget, so it does not lengthen the batch's rollout loop
            budget = jnp.where(wanted, phases.proposal_budget(cfg, spec, problem, s, t, sequence), 0)
            out, sequence = phases.run_rollout(models, spec, problem, sequence, s.past_len + 1, budget)
            return out, sequence

        return vm(one)(problems, state, token, proposing)

    out, proposed_sequence = _when_any(proposing, propose, problems, state, new_token)
    proposed_len = state.past_len - problems.prompt_len + 1 + out.length
    current_len = state.past_len - problems.prompt_len + state.ahead_len
    stats = stats._replace(
        rollouts=stats.rollouts + proposing,
        proposals=stats.proposals + proposing,
        generated_tokens=stats.generated_tokens + jnp.where(proposing, out.length, 0),
        nonfinite=stats.nonfinite + (proposing & (out.finish == FINISH_NONFINITE)),
        flops=stats.flops
        + jnp.where(proposing, vm(lambda p, s, n: phases.rollout_flops(models, s.past_len + 1, n))(problems, state, out.length), 0.0),
    )
    if cfg.rejection_sampling:
        def compare(problems, state, proposed_sequence):
            score = vm(lambda p, seq, n: response_reward(models, p, seq, n, rm_pad))
            return score(problems, state.sequence, current_len), score(problems, proposed_sequence, proposed_len)

        reward_current, reward_proposed = _when_any(proposing, compare, problems, state, proposed_sequence)
        accepted = proposing & (reward_proposed > reward_current)
        score_cost = vm(lambda p, a, b: phases.score_flops(models, p, a) + phases.score_flops(models, p, b))(
            problems, current_len, proposed_len
        )
        stats = stats._replace(
            acceptance_tests=stats.acceptance_tests + proposing,
            nonfinite=stats.nonfinite + (proposing & ~(jnp.isfinite(reward_current) & jnp.isfinite(reward_proposed))),
            flops=stats.flops + jnp.where(proposing, score_cost, 0.0),
        )
    else:
        reward_current = reward_proposed = jnp.zeros(proposing.shape, jnp.float32)
        accepted = proposing
    stats = stats._replace(rejections=stats.rejections + (proposing & ~accepted))

    events = state.events
    slot = events.count
    n = cfg.max_new_tokens

    def record(events, slot, pos, old, new, rc, rp, acc, cur_seq, cur_from, prop_seq, prop_from, cur_n, prop_n):
        window = lambda seq, start, count: jnp.where(
            jnp.arange(n) < count, jax.lax.dynamic_slice_in_dim(jnp.pad(seq, (0, n)), start, n), 0
        )
        return events._replace(
            count=slot + 1,
            position=events.position.at[slot].set(pos),
            old_token=events.old_token.at[slot].set(old),
            new_token=events.new_token.at[slot].set(new),
            reward_current=events.reward_current.at[slot].set(rc),
            reward_proposed=events.reward_proposed.at[slot].set(rp),
            accepted=events.accepted.at[slot].set(acc),
            current=events.current.at[slot].set(window(cur_seq, cur_from, cur_n)),
            proposed=events.proposed.at[slot].set(window(prop_seq, prop_from, prop_n)),
            current_len=events.current_len.at[slot].set(cur_n),
            proposed_len=events.proposed_len.at[slot].set(jnp.minimum(prop_n, n)),
        )

    recorded = vm(record)(
        events, jnp.minimum(slot, cfg.max_n_generations - 1), positions, old_token, new_token, reward_current,
        reward_proposed, accepted, state.sequence, state.past_len, proposed_sequence, state.past_len,
        state.ahead_len, out.length + 1,
    )
    events = _where(proposing, recorded, events)

    # take the proposal, or commit the old first token and keep the old rollout
    taken = state._replace(
        sequence=proposed_sequence, past_len=state.past_len + 1, ahead_len=out.length, latents=out.latents
    )
    kept = vm(phases.commit)(state, jnp.ones_like(state.ahead_len))
    state = _where(accepted, taken, _where(stepping, kept, state))
    state = state._replace(done=state.done | (stepping & (state.ahead_len == 0)), stats=stats, events=events)
    return state


def nabla_run(models, cfg, spec, rm_pad, problems, state) -> NablaState:
    return jax.lax.while_loop(
        lambda s: jnp.any(~s.done),
        lambda s: nabla_step(models, cfg, spec, rm_pad, problems, s),
        state,
    )


_traces = 0


def trace_count() -> int:
    """Compilations of :func:`decode_batch` in this process."""
    return _traces


@functools.partial(jax.jit, static_argnames=("cfg", "spec", "rm_pad", "batch_cond"))
def decode_batch(
    models: DTOModels,
    cfg: NablaConfig,
    spec: RolloutSpec,
    rm_pad: int,
    problems: NablaProblem,
    batch_cond: bool = True,
) -> NablaState:
    """Decode a batch of problems to the end in one compiled program."""
    global _traces
    _traces += 1
    if batch_cond:
        state = nabla_init(models, cfg, spec, problems)
        return nabla_run(models, cfg, spec, rm_pad, problems, state)

    def single(problem):
        one = jax.tree.map(lambda x: x[None], problem)
        state = nabla_init(models, cfg, spec, one)
        return jax.tree.map(lambda x: x[0], nabla_run(models, cfg, spec, rm_pad, one, state))

    return jax.vmap(single)(problems)
