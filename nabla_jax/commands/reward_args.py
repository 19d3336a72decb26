"""The ``--reward`` flags every command that loads a reward shares (run, eval)."""

from __future__ import annotations

import argparse

from nabla_jax.commands.parsing import finite_float
from nabla_jax.rewards.kinds import AGGREGATES, UNSET

REWARD_HELP = (
    "reward: a *ForSequenceClassification checkpoint (outcome), a *ForProcessRewardModel checkpoint (process), "
    "likelihood:LM (a causal LM's mean token log-probability of the response) or judge:LM (its Yes/No log-odds); "
    "a path or a bundled name (testbed:outcome, testbed:prm, likelihood:testbed:verifier, testbed:reward)"
)
STORED = " A checkpoint that stores its own reading options (config.json) supplies the default."


def _none_or(kind):
    return lambda text: None if text.lower() == "none" else kind(text)


def add_reward_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reward kinds")
    group.add_argument("--reward-aggregate", choices=AGGREGATES, default=UNSET,
                       help="process reward: how step scores combine (default min)." + STORED)
    group.add_argument("--reward-separator", type=_none_or(str), default=UNSET,
                       help="process reward: the token inserted after each step (default <extra_0>, as "
                            "Qwen2.5-Math-PRM); none reads the PRM at each step's own last token." + STORED)
    group.add_argument("--reward-step-split", default=UNSET,
                       help="process reward: a step ends at a token whose text ends with this (default a blank "
                            "line)." + STORED)
    group.add_argument("--reward-clip", type=_none_or(finite_float), default=UNSET,
                       help="likelihood reward: floor for each token's log-probability, e.g. -6 (default none)." + STORED)
    group.add_argument("--reward-context-gradient-only", dest="reward_target_gradient", action="store_const",
                       const=False, default=UNSET,
                       help="likelihood reward: DTO's gradient reaches the response only through the context it "
                            "forms, not through the tokens read out as targets (as a scalar reward's would); the "
                            "reward's values are unchanged")


def reward_options(args) -> dict:
    """The keyword arguments of :func:`nabla_jax.rewards.load_reward` the flags give (those left out are the
    checkpoint's own, else the defaults)."""
    given = {"aggregate": args.reward_aggregate, "separator": args.reward_separator, "step_split": args.reward_step_split,
             "clip": args.reward_clip, "target_gradient": args.reward_target_gradient}
    if given["step_split"] is not UNSET:
        given["step_split"] = given["step_split"].encode().decode("unicode_escape")  # a typed "\\n" is a newline
    return {k: v for k, v in given.items() if v is not UNSET}
