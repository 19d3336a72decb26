"""``nabla-jax run --policy P --reward R --prompt "..."``: decode with the ∇-Reasoner, print the answer and statistics."""

from __future__ import annotations

import argparse
import json
import sys

from nabla_jax.bundled import POLICY_HELP
from nabla_jax.commands.parsing import add_allow_nonfinite, finite_float, seed_value
from nabla_jax.commands.reward_args import REWARD_HELP, add_reward_arguments, reward_options
from nabla_jax.reasoner.config import NablaConfig, setting_default, setting_names


def _optional_float(text: str):
    return None if text.lower() in ("none", "off") else finite_float(text)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def config_option_type(name: str):
    """The argparse type of a NablaConfig setting (flat name): thresholds and the rollouts' repetition penalty
    accept "none" (off; for the penalty: the policy's generation_config.json), booleans true/false."""
    default = setting_default(name)
    if isinstance(default, bool):
        return _bool
    if name.endswith("_threshold") or name in ("rollout_repetition_penalty", "mix_beta"):
        return _optional_float
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return finite_float
    return str


def add_config_arguments(parser) -> None:
    """One ``--name`` option per NablaConfig setting (official flat names, dashes for underscores)."""
    from nabla_jax.presets import PRESETS

    group = parser.add_argument_group("∇-Reasoner settings (defaults: the official MATH-500 script)")
    group.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="an official script's settings; the flags below override it")
    for name in setting_names():
        # SUPPRESS: an option given as "none" (a threshold switched off) is told apart from one not given
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=config_option_type(name),
                           default=argparse.SUPPRESS, help=f"default {setting_default(name)}")


def config_from_args(args) -> NablaConfig:
    changes = {name: getattr(args, name) for name in setting_names() if hasattr(args, name)}
    if getattr(args, "preset", None):
        return NablaConfig.preset(args.preset, **changes)  # explicit flags override the preset
    return NablaConfig.from_settings(**changes)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="decode prompts with the ∇-Reasoner and print the answers and statistics",
        description="Decode each --prompt with the ∇-Reasoner (DTO + resampling + rejection sampling). --policy and "
        "--reward take what load_policy / load_reward take (an HF directory, a .gguf, an Orbax directory or a "
        "bundled name).",
    )
    parser.add_argument("--policy", required=True, help=POLICY_HELP)
    parser.add_argument("--reward", required=True, help=REWARD_HELP)
    parser.add_argument("--prompt", action="append", required=True, help="repeatable")
    add_allow_nonfinite(parser)
    parser.add_argument("--seed", type=seed_value, default=0, help="an integer in [0, 2**64)")
    parser.add_argument("--system", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mesh", default=None, help="shard over a device mesh, e.g. data=2,fsdp=2,tensor=2 "
                        "(axes data, fsdp, tensor; missing ones 1; sizes multiply to the device count)")
    parser.add_argument("--verbose", action="store_true", help="print every revision: current and proposed continuation")
    parser.add_argument("--json", action="store_true", help="one JSON object per prompt")
    add_config_arguments(parser)
    add_reward_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import nabla_jax
    from nabla_jax.reasoner import NablaReasoner
    from nabla_jax.rewards import load_reward
    from nabla_jax.sharding import make_mesh

    config = config_from_args(args)
    mesh = make_mesh(args.mesh) if args.mesh else None
    policy = nabla_jax.load_policy(args.policy, mesh=mesh, allow_nonfinite=args.allow_nonfinite)
    reward = load_reward(args.reward, policy, mesh=mesh, allow_nonfinite=args.allow_nonfinite,
                               **reward_options(args))
    reasoner = NablaReasoner(policy, reward, config)
    results = reasoner.generate(args.prompt, seed=args.seed, batch_size=args.batch_size, system=args.system)
    decode = policy.tokenizer.decode
    for result in results:
        if args.json:
            print(json.dumps({"prompt": result.prompt, "text": result.text, "token_ids": result.token_ids,
                              "stats": result.stats}))
            continue
        print(f"=== {result.prompt}")
        if args.verbose:
            for k, rev in enumerate(result.revisions):
                verdict = "ACCEPTED" if rev.accepted else "rejected"
                print(f"--- revision {k + 1} at response token {rev.position}: {verdict} "
                      f"(reward {rev.reward_current:.4f} -> {rev.reward_proposed:.4f})")
                print(f"    current : {decode(rev.current)!r}")
                print(f"    proposed: {decode(rev.proposed)!r}")
        print(result.text)
        if args.verbose:
            values = reasoner.step_scores(result)
            what = {"process": "step scores", "likelihood": "token log-probs", "outcome": "score"}[reward.kind.name]
            print(f"--- final reward {reward.kind.describe()}; {what}: " + ", ".join(f"{v:.4f}" for v in values))
        s = result.stats
        rate = "n/a" if s["rejection_rate"] is None else f"{s['rejection_rate']:.2f}"
        print(
            f"--- rollouts {s['rollouts']}, proposals {s['proposals']}, rejections {s['rejections']} (rate {rate}), "
            f"tokens optimised {s['dto_runs']}, skipped {s['skipped_tokens']}, DTO steps full/cached "
            f"{s['dto_full_steps']}/{s['dto_cached_steps']}, model calls official {s['model_calls_official']} / "
            f"full {s['model_calls_full']}, {s['flops']:.3g} FLOPs, {s['wall_time_s']:.1f} s"
        )
    broken = [i for i, result in enumerate(results) if result.stats["nonfinite"]]
    if broken:
        print(f"nabla-jax run: error: NaN/inf values were met while decoding prompt(s) {broken} (rollout logits, the "
              "DTO loss or gradient, or an acceptance reward; see the 'nonfinite' statistic): their answers are "
              "suspect", file=sys.stderr)
        return 3
    return 0
