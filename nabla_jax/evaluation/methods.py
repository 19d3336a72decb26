"""Decoding methods under evaluation: :class:`MethodSpec`, and the baselines (greedy, sc, bon, wbon). The methods
by name are in :mod:`nabla_jax.evaluation.registry`.

A method runs ``run(ctx, problems, seed, ns) -> list[dict[int, Outcome]]``: for each problem of the batch (in
order), one :class:`Outcome` per requested budget ``n`` in ``ns``; its record key is :func:`method_key`
(``"bon@4"``, ``"greedy"``). Methods never see the gold answer; the runner grades outcomes. Sampled methods share
their candidates: the ``@k`` outcome uses the first k of the max(ns) drawn, exactly the candidates a k-candidate run
draws (keys depend on the candidate index only). Budgets, costs and wall time: docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

from nabla_jax.evaluation.accounting import ZERO, Cost, total
from nabla_jax.evaluation.context import Candidate, EvalContext
from nabla_jax.evaluation.datasets import Problem
from nabla_jax.evaluation.options import option
from nabla_jax.generation import SamplingConfig


@dataclasses.dataclass
class Outcome:
    """One method's answer to one problem."""

    text: str  # the chosen response
    answer: str | None  # its extracted answer (the voted answer for sc/wbon)
    candidates: list[Candidate]  # what the choice was made from (the final response alone for a single decode)
    cost: Cost
    wall_time_s: float
    chosen: int | None = None  # index into candidates
    stats: dict = dataclasses.field(default_factory=dict)  # JSON numbers, e.g. {"rejections": 3, "proposals": 7}
    error: str | None = None  # why the answer is suspect (NaN/inf met on the way), recorded with it


RunFn = Callable[[EvalContext, Sequence[Problem], int, tuple[int, ...]], list[dict[int, Outcome]]]


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    run: RunFn
    needs_reward: bool
    uses_n: bool
    description: str
    settings: Callable[[dict], dict] = lambda options: {}  # method settings (from ctx.options) for the fingerprint


def method_key(spec: MethodSpec, n: int) -> str:
    return f"{spec.name}@{n}" if spec.uses_n else spec.name


def vote(answers: Sequence[str | None], weights: Sequence[float], equivalent) -> int | None:
    """Index of the first member of the heaviest answer class (None when no candidate has an answer).

    Classes are built greedily: an answer joins the first class whose representative (first member) it is
    ``equivalent`` to. Ties in weight go to the class that appears first."""
    classes: list[list] = []  # [representative, weight, first index]
    for i, (answer, weight) in enumerate(zip(answers, weights)):
        if answer is None:
            continue
        for cls in classes:
            if answer == cls[0] or equivalent(answer, cls[0]):
                cls[1] += weight
                break
        else:
            classes.append([answer, weight, i])
    if not classes:
        return None
    return max(classes, key=lambda c: (c[1], -c[2]))[2]


def nonfinite_error(candidates: Sequence[Candidate], scored: bool) -> str | None:
    """Why candidates are suspect: logits that became NaN/inf while generating, or a NaN/inf reward."""
    problems = []
    cut = [i for i, c in enumerate(candidates) if c.finish == "nonfinite"]
    if cut:
        problems.append(f"non-finite logits cut candidate(s) {cut}")
    unscored = [i for i, c in enumerate(candidates) if scored and not math.isfinite(c.reward)]
    if unscored:
        problems.append(f"non-finite reward for candidate(s) {unscored} (left out of the choice)")
    return "; ".join(problems) or None


def _greedy(ctx: EvalContext, problems, seed, ns):
    """Deterministic: every seed repeats the same decode (and pays for it), which keeps records self-contained."""
    start = time.perf_counter()
    candidates = ctx.rollouts([(p, 0) for p in problems], seed, SamplingConfig(0.0))
    seconds = (time.perf_counter() - start) / len(problems)
    return [{n: Outcome(c.text, c.answer, [c], c.cost, seconds, 0, error=nonfinite_error([c], False)) for n in ns}
            for c in candidates]


def _select_sc(ctx, candidates):
    return vote([c.answer for c in candidates], [1.0] * len(candidates), ctx.grader.equivalent)


def select_bon(ctx, candidates):
    """The highest finite reward (None when no reward is finite)."""
    finite = [i for i, c in enumerate(candidates) if math.isfinite(c.reward)]
    return max(finite, key=lambda i: (candidates[i].reward, -i)) if finite else None


def _select_wbon(ctx, candidates):
    """Vote weighted by softmax(reward / T) over the candidates with a finite reward."""
    tau = option(ctx.options, "wbon_temperature")
    finite = [math.isfinite(c.reward) for c in candidates]
    if not any(finite):
        return None
    top = max(c.reward for c, ok in zip(candidates, finite) if ok)
    weights = [math.exp((c.reward - top) / tau) if ok else 0.0 for c, ok in zip(candidates, finite)]
    answers = [c.answer if ok else None for c, ok in zip(candidates, finite)]
    return vote(answers, weights, ctx.grader.equivalent)


def _sampled(select, needs_reward: bool) -> RunFn:
    def run(ctx: EvalContext, problems, seed, ns):
        n_max = max(ns)
        candidates, seconds = ctx.sample(problems, seed, n_max)
        if needs_reward:
            seconds += ctx.score(problems, seed, candidates)
        share = seconds / len(problems)
        outcomes = []
        for cands in candidates:
            per_n = {}
            for n in ns:
                subset = cands[:n]
                start = time.perf_counter()
                chosen = select(ctx, subset)
                pick = subset[chosen if chosen is not None else 0]
                cost = total(c.cost for c in subset)
                if needs_reward:
                    cost = cost + total(c.reward_cost or ZERO for c in subset)
                wall = share * n / n_max + time.perf_counter() - start
                per_n[n] = Outcome(pick.text, pick.answer if chosen is not None else None, subset, cost, wall, chosen,
                                   error=nonfinite_error(subset, needs_reward))
            outcomes.append(per_n)
        return outcomes

    return run


BASELINES = (
    MethodSpec("greedy", _greedy, False, False, "temperature-0 decoding"),
    MethodSpec("sc", _sampled(_select_sc, False), False, True, "self-consistency: majority vote of N"),
    MethodSpec("bon", _sampled(select_bon, True), True, True, "best-of-N: the highest reward"),
    MethodSpec(
        "wbon",
        _sampled(_select_wbon, True),
        True,
        True,
        "weighted best-of-N: vote weighted by softmax(reward / T)",
        lambda options: {"wbon_temperature": option(options, "wbon_temperature")},
    ),
)
