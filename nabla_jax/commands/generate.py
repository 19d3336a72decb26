"""``nabla-jax generate --policy P --prompt TEXT``: sample continuations of one or more prompts."""

from __future__ import annotations

import dataclasses
import json
import sys

from nabla_jax.bundled import POLICY_HELP
from nabla_jax.commands.parsing import add_allow_nonfinite, finite_float, seed_value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate continuations of prompts with a policy",
        description="Run each --prompt through the policy's chat template (the prompt as the only user message) "
        "and print the sampled continuation. temperature 0 is greedy; top-k 0 and top-p 1 are off.",
    )
    parser.add_argument("--policy", required=True, help=POLICY_HELP)
    parser.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=finite_float, default=None,
                        help="default: the checkpoint's generation_config.json, else 1")
    parser.add_argument("--top-k", type=int, default=None, help="default: generation_config.json, else 0 (off)")
    parser.add_argument("--top-p", type=finite_float, default=None, help="default: generation_config.json, else 1 (off)")
    parser.add_argument("--repetition-penalty", type=finite_float, default=None,
                        help="vLLM/transformers semantics (1 = off); default: generation_config.json, else 1")
    add_allow_nonfinite(parser)
    parser.add_argument("--seed", type=seed_value, default=0, help="an integer in [0, 2**64)")
    parser.add_argument("--system", default=None, help="system message (default: none, as the official code)")
    parser.add_argument("--stop", action="append", default=None, help="stop string; repeat for several")
    parser.add_argument("--no-chat", action="store_true", help="use the prompt text as is, without the template")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON object per prompt instead of text")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nabla_jax.generation import SamplingConfig, generate
    from nabla_jax.loading import load_policy

    SamplingConfig(*(1.0 if v is None else v for v in (args.temperature, args.top_k, args.top_p,
                                                       args.repetition_penalty)))  # bad settings fail before loading
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    policy = load_policy(args.policy, allow_nonfinite=args.allow_nonfinite)
    results = generate(
        policy,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=args.stop,
        system=args.system,
        chat=not args.no_chat,
        batch_size=args.batch_size,
    )
    for i, result in enumerate(results):
        if args.json:
            print(json.dumps({"prompt": args.prompt[i], **dataclasses.asdict(result)}, ensure_ascii=False))
        else:
            if len(results) > 1:
                print(f"=== prompt {i} ({result.finish_reason}, {len(result.token_ids)} tokens) ===")
            print(result.text)
    broken = [i for i, result in enumerate(results) if result.finish_reason == "nonfinite"]
    if broken:
        print(f"nabla-jax generate: error: the policy's logits became NaN or infinite for prompt(s) {broken}; "
              "their text above is cut where that happened", file=sys.stderr)
        return 3
    return 0
