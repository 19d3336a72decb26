"""The reward-guided searches as evaluation methods: ``beam@N`` (PRM-guided beam search), ``dvts@N`` (diverse verifier
tree search) and ``pf@N`` (particle filtering), N rows in all; ``rgd@k`` (reward-guided token decoding, k
candidates per token). Rollouts use the evaluation's decoding settings; the
beam width and the particles' temperature are method options (:mod:`nabla_jax.evaluation.options`)."""

from __future__ import annotations

from nabla_jax.evaluation.accounting import Cost
from nabla_jax.evaluation.context import Candidate
from nabla_jax.evaluation.methods import MethodSpec, Outcome
from nabla_jax.evaluation.options import option
from nabla_jax.search import GuidedConfig, RewardGuidedDecoder, SearchConfig, StepSearch
from nabla_jax.search.config import BEAM, DVTS, PARTICLES

STATS = ("steps", "rollouts", "reward_calls", "nonfinite")
GUIDED = "rgd"


def search_config(ctx, method: str, n: int) -> SearchConfig:
    s = ctx.settings
    return SearchConfig(method, n, option(ctx.options, "beam_width"), option(ctx.options, "pf_temperature"),
                        s.max_new_tokens, s.sampling)


def guided_config(ctx, n: int) -> GuidedConfig:
    return GuidedConfig(n, option(ctx.options, "rgd_weight"), ctx.settings.max_new_tokens)


def _run(method: str):
    def run(ctx, problems, seed, ns):
        out = [{} for _ in problems]
        for n in ns:
            if method == GUIDED:
                config = guided_config(ctx, n)
                build = RewardGuidedDecoder
            else:
                config = search_config(ctx, method, n)
                build = StepSearch
            key = ("search", config)
            if key not in ctx.cache:
                ctx.cache[key] = build(ctx.policy, ctx.reward, config)
            results = ctx.cache[key].generate([ctx.message(p) for p in problems], seed=seed,
                                              batch_size=len(problems), problem_ids=[p.index for p in problems],
                                              system=ctx.settings.system)
            for i, result in enumerate(results):
                st = result.stats
                cost = Cost(int(st["official_calls"]), int(st["full_calls"]), st["flops"], int(st["generated_tokens"]),
                            int(st["rollouts"]), int(st["reward_calls"]))
                ends = bool(result.token_ids) and result.token_ids[-1] in ctx.eos_ids
                candidate = Candidate(result.token_ids, result.text, ctx.grader.extract(result.text),
                                      "eos" if ends else "length", cost, result.score)
                error = (f"NaN/inf logits in {st['nonfinite']} rollouts: the answer is suspect"
                         if st["nonfinite"] else None)
                out[i][n] = Outcome(result.text, candidate.answer, [candidate], cost, st["wall_time_s"], 0,
                                    {k: st[k] for k in STATS}, error)
        return out

    return run


def _width(options: dict) -> dict:
    return {"beam_width": option(options, "beam_width")}


SEARCH_METHODS = (
    MethodSpec(BEAM, _run(BEAM), True, True, "PRM-guided beam search: keep the N/M best steps, expand each M ways",
               settings=_width),
    MethodSpec(DVTS, _run(DVTS), True, True, "diverse verifier tree search: N/M subtrees of width M", settings=_width),
    MethodSpec(PARTICLES, _run(PARTICLES), True, True, "particle filtering: N particles resampled by the PRM's steps",
               settings=lambda options: {"pf_temperature": option(options, "pf_temperature")}),
    MethodSpec(GUIDED, _run(GUIDED), True, True, "reward-guided token decoding (ARGS): the top N tokens rescored by "
               "logit + w * reward", settings=lambda options: {"rgd_weight": option(options, "rgd_weight")}),
)
