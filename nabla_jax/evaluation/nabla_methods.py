"""The ∇-Reasoner as evaluation methods: ``nabla@N`` (budget ``max_n_generations`` = N) and ``nabla_no_dto@N``
(blind resampling: the first ahead token is resampled from the rollout's own logits, the paper's no-DTO baseline).

Rollouts use the evaluation's decoding settings (temperature, top-k, top-p, repetition penalty, max_new_tokens);
every other setting comes from ``ctx.options["nabla"]`` (a :class:`NablaConfig`, from ``nabla-jax eval --preset``
and ``--nabla-*``), defaulting to the official MATH-500 script.
"""

from __future__ import annotations

from nabla_jax.evaluation.accounting import Cost
from nabla_jax.evaluation.context import Candidate
from nabla_jax.evaluation.methods import MethodSpec, Outcome
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


def _run(use_dto: bool, mix: bool = False):
    def run(ctx, problems, seed, ns):
        out = [{} for _ in problems]
        for n in ns:
            config = nabla_config(ctx, n, use_dto, mix)
            key = ("nabla", config)
            if key not in ctx.cache:
                ctx.cache[key] = NablaReasoner(ctx.policy, ctx.reward, config)
            results = ctx.cache[key].generate(
                [ctx.message(p) for p in problems], seed=seed, batch_size=len(problems),
                problem_ids=[p.index for p in problems], system=ctx.settings.system,
            )
            for i, result in enumerate(results):
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
                out[i][n] = Outcome(result.text, candidate.answer, [candidate], cost, st["wall_time_s"], 0,
                                    {k: st[k] for k in (MIX_STATS if mix else STATS)}, error)
        return out

    return run


def _settings(options: dict) -> dict:
    """The fingerprint's part: the settings that differ from the defaults, except those the evaluation sets."""
    changed = base_config(options).changed_settings()
    return {"nabla": {k: v for k, v in sorted(changed.items()) if k not in SET_BY_EVAL}}


NABLA_METHODS = (
    MethodSpec("nabla", _run(True), True, True, "∇-Reasoner, budget max_n_generations=N", settings=_settings),
    MethodSpec("nabla_no_dto", _run(False), True, True, "∇-Reasoner without DTO (blind resampling), budget N",
               settings=_settings),
    MethodSpec("mix", _run(False, mix=True), True, True,
               "the ∇-Reasoner's loop with DTO replaced by sampling from log pi + beta * log p_verifier, budget N",
               settings=lambda options: {**_settings(options), "mix_beta": option(options, "mix_beta")}),
)
