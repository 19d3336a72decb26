"""The ``--reward`` flags every command that loads a reward shares (run, eval)."""

from __future__ import annotations

import argparse

from nabla_jax.rewards.kinds import AGGREGATES

REWARD_HELP = (
    "reward: a *ForSequenceClassification checkpoint (outcome), a *ForProcessRewardModel checkpoint (process), "
    "likelihood:LM (a causal LM's mean token log-probability of the response) or judge:LM (its Yes/No log-odds)"
)


def _none_or(kind):
    return lambda text: None if text.lower() == "none" else kind(text)


def add_reward_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reward kinds")
    group.add_argument("--reward-aggregate", choices=AGGREGATES, default="min",
                       help="process reward: how step scores combine (default min)")
    group.add_argument("--reward-separator", type=_none_or(str), default="<extra_0>",
                       help="process reward: the token inserted after each step (default <extra_0>, as "
                            "Qwen2.5-Math-PRM); none reads the PRM at each step's own last token")
    group.add_argument("--reward-step-split", default="\n\n",
                       help="process reward: a step ends at a token whose text ends with this (default a blank line)")
    group.add_argument("--reward-clip", type=_none_or(float), default=None,
                       help="likelihood reward: floor for each token's log-probability, e.g. -6 (default none)")


def reward_options(args) -> dict:
    """The keyword arguments of :func:`nabla_jax.rewards.load_reward_model` the flags give."""
    step_split = args.reward_step_split.encode().decode("unicode_escape")  # "\\n" typed in a shell is a newline
    return {"aggregate": args.reward_aggregate, "separator": args.reward_separator, "step_split": step_split,
            "clip": args.reward_clip}
