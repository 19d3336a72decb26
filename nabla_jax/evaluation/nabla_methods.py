"""The ∇-Reasoner as evaluation methods: ``nabla@N`` (budget ``max_n_generations`` = N), ``nabla_no_dto@N``
(blind resampling: the first ahead token is resampled from the rollout's own logits, the paper's no-DTO baseline),
``mix@N`` (the gradient-free control) and ``nabla_best@k`` (k independent ∇-Reasoner runs at the configured budget,
the one the reward scores highest kept: the ∇-Reasoner given k times the compute; run 0 is ``nabla``'s own).

Rollouts use the evaluation's decoding settings (temperature, top-k, top-p, repetition penalty, max_new_tokens);
every other setting comes from ``ctx.options["nabla"]`` (a :class:`NablaConfig`, from ``nabla-jax eval --preset``
and ``--nabla-*``), defaulting to the official MATH-500 script.
"""

from __future__ import annotations

import time

from nabla_jax.evaluation.accounting import ZERO, Cost, total
from nabla_jax.evaluation.context import Candidate
from nabla_jax.evaluation.methods import MethodSpec, Outcome, nonfinite_error, select_bon
from nabla_jax.evaluation.options import option
from nabla_jax.reasoner import NablaConfig, NablaReasoner

STATS = ("rollouts", "proposals", "rejections", "acceptance_tests", "dto_runs", "dto_full_steps", "dto_cached_steps",
         "selector_passes", "skipped_tokens", "budget_tokens", "nonfinite")
MIX_STATS = STATS + ("verifier_passes",)


# settings each nabla method takes from the evaluation (its decoding settings, --n and the method's name)
SET_BY_EVAL = ("max_new_tokens", "rollout_temperature", "rollout_top_k", "rollout_top_p", "rollout_repetition_penalty",
               "max_n_generations", "use_dto", "mix_beta")


def base_config(options: dict) -> NablaConfig:
    config = options.get("nabla", NablaConfig())
    if not isinstance(config, NablaConfig):
        raise TypeError(f'options["nabla"] must be a NablaConfig (e.g. NablaConfig.from_settings(**settings)), '
                        f"got {type(config).__name__}")
    return config


def nabla_config(ctx, n: int, use_dto: bool, mix: bool = False) -> NablaConfig:
    s = ctx.settings
    return base_config(ctx.options).replace(
        max_n_generations=n, max_new_tokens=s.max_new_tokens, rollout=s.sampling, use_dto=use_dto,
        mix_beta=option(ctx.options, "mix_beta") if mix else None,
    )


def _reasoner(ctx, config: NablaConfig) -> NablaReasoner:
    key = ("nabla", config)
    if key not in ctx.cache:
        ctx.cache[key] = NablaReasoner(ctx.policy, ctx.reward, config)
    return ctx.cache[key]


def _decode(ctx, problems, seed: int, config: NablaConfig, stats=STATS) -> list[Outcome]:
    """One ∇-Reasoner run per problem: its final response as an :class:`Outcome` (one candidate)."""
    results = _reasoner(ctx, config).generate(
        [ctx.message(p) for p in problems], seed=seed, batch_size=len(problems),
        problem_ids=[p.index for p in problems], system=ctx.settings.system,
    )
    outcomes = []
    for result in results:
        st = result.stats
        cost = Cost(st["model_calls_official"], st["model_calls_full"], st["flops"], st["generated_tokens"],
                    st["rollouts"], 2 * st["acceptance_tests"])
        ends = bool(result.token_ids) and result.token_ids[-1] in ctx.eos_ids
        candidate = Candidate(result.token_ids, result.text, ctx.grader.extract(result.text),
                              "eos" if ends else "length", cost)
        error = None
        if st["nonfinite"]:
            error = (f"NaN/inf met {st['nonfinite']} times (rollout logits, DTO loss or gradient, or an "
                     "acceptance reward): the answer is suspect")
        outcomes.append(Outcome(result.text, candidate.answer, [candidate], cost, st["wall_time_s"], 0,
                                {k: st[k] for k in stats}, error))
    return outcomes


def _run(use_dto: bool, mix: bool = False):
    def run(ctx, problems, seed, ns):
        out = [{} for _ in problems]
        for n in ns:
            decoded = _decode(ctx, problems, seed, nabla_config(ctx, n, use_dto, mix), MIX_STATS if mix else STATS)
            for i, outcome in enumerate(decoded):
                out[i][n] = outcome
        return out

    return run


def run_seed(seed: int, run: int) -> int:
    """The seed of the ``run``-th independent ∇-Reasoner run (run 0: ``seed`` itself, so ``nabla_best@1`` is
    ``nabla``'s record); distinct for every (seed, run) with seed < 1,000,003."""
    return seed + 1_000_003 * run


def _run_best(ctx, problems, seed, ns):
    """``max(ns)`` independent runs at the configured budget; ``@k`` keeps the best-rewarded of the first k."""
    config = base_config(ctx.options).replace(max_new_tokens=ctx.settings.max_new_tokens, rollout=ctx.settings.sampling)
    runs = [_decode(ctx, problems, run_seed(seed, r), config) for r in range(max(ns))]
    finals = [[runs[r][i].candidates[0] for r in range(len(runs))] for i in range(len(problems))]
    start = time.perf_counter()
    ctx.score(problems, seed, finals, pool="nabla_best")
    scoring = (time.perf_counter() - start) / len(problems)
    out = []
    for i, candidates in enumerate(finals):
        per_n = {}
        for n in ns:
            subset, decoded = candidates[:n], [runs[r][i] for r in range(n)]
            chosen = select_bon(ctx, subset)
            pick = subset[chosen if chosen is not None else 0]
            cost = total(c.cost for c in subset)
            if n > 1:  # a choice to make: each final response scored once (one run alone is nabla's record)
                cost = cost + total(c.reward_cost or ZERO for c in subset)
            stats = {k: sum(d.stats[k] for d in decoded) for k in STATS}
            errors = [d.error for d in decoded] + [nonfinite_error(subset, True)]
            per_n[n] = Outcome(pick.text, pick.answer if chosen is not None else None, subset, cost,
                               sum(d.wall_time_s for d in decoded) + (scoring * n / max(ns) if n > 1 else 0.0),
                               chosen, stats, "; ".join(e for e in errors if e) or None)
        out.append(per_n)
    return out


def _settings(options: dict) -> dict:
    """The fingerprint's part: the settings that differ from the defaults, except those the evaluation sets."""
    changed = base_config(options).changed_settings()
    return {"nabla": {k: v for k, v in sorted(changed.items()) if k not in SET_BY_EVAL}}


NABLA_METHODS = (
    MethodSpec("nabla", _run(True), True, True, "∇-Reasoner, budget max_n_generations=N", settings=_settings),
    MethodSpec("nabla_no_dto", _run(False), True, True, "∇-Reasoner without DTO (blind resampling), budget N",
               settings=_settings),
    MethodSpec("nabla_best", _run_best, True, True,
               "k independent ∇-Reasoner runs at the configured budget, the best-rewarded kept",
               settings=lambda options: {**_settings(options),
                                         "budget": base_config(options).max_n_generations}),
    MethodSpec("mix", _run(False, mix=True), True, True,
               "the ∇-Reasoner's loop with DTO replaced by sampling from log pi + beta * log p_verifier, budget N",
               settings=lambda options: {**_settings(options), "mix_beta": option(options, "mix_beta")}),
)
