"""``nabla-jax plan``: per-device memory of a run on a mesh, from the models' configs alone (nothing allocated)."""

from __future__ import annotations


def register(subparsers) -> None:
    from nabla_jax.configs import PUBLISHED
    from nabla_jax.dto.config import EMBEDDERS, UPDATE_POSITIONS

    parser = subparsers.add_parser(
        "plan",
        help="per-device memory of params, KV caches and DTO state on a mesh (no weights needed)",
        description="Print how much of one device the params, KV caches, DTO variables and Adam state of a run "
        "take when sharded over a mesh, computed with jax.eval_shape (nothing is allocated), and whether the total "
        "fits the device. CONFIG is a bundled config name (" + ", ".join(PUBLISHED) + ") or a path to a "
        "config.json or model directory.",
    )
    parser.add_argument("--policy", required=True, metavar="CONFIG", help="policy config")
    parser.add_argument("--reward", default=None, metavar="CONFIG", help="reward model config (optional)")
    parser.add_argument("--mesh", required=True, help="axis sizes, e.g. data=2,fsdp=4,tensor=8 (missing axes are 1)")
    parser.add_argument("--batch", type=int, required=True, help="sequences decoded together (B)")
    parser.add_argument("--max-len", type=int, required=True, help="KV cache length per sequence (L)")
    parser.add_argument("--ahead", type=int, default=None,
                        help="ahead positions DTO sees (the reasoner's max_new_tokens; default --max-len)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16",
                        help="params and KV cache dtype (default bfloat16; DTO state is always float32)")
    parser.add_argument("--embedder", choices=EMBEDDERS, default="logits", help="DTO variables (default logits)")
    parser.add_argument("--update-positions", choices=UPDATE_POSITIONS, default="first",
                        help="DTO positions that move: first (official code, default) or all (paper Alg. 2)")
    parser.add_argument("--no-grad-caching", action="store_true", help="no cached dL/dy in the DTO state")
    parser.add_argument("--no-activations", action="store_true", help="leave out the activation estimate")
    parser.add_argument("--device-memory", default="80GiB",
                        help="memory of one device, e.g. 80GiB, 141GB (default 80GiB)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    import json

    from nabla_jax.configs import published_config
    from nabla_jax.dto.config import DTOConfig
    from nabla_jax.plan import format_plan, memory_plan

    dto = DTOConfig(embedder=args.embedder, update_positions=args.update_positions,
                    grad_caching=not args.no_grad_caching)
    plan = memory_plan(
        published_config(args.policy),
        published_config(args.reward) if args.reward else None,
        args.mesh,
        batch=args.batch,
        max_len=args.max_len,
        ahead=args.ahead,
        dtype=args.dtype,
        dto=dto,
        device_memory=args.device_memory,
        activations=not args.no_activations,
    )
    print(json.dumps(plan.as_dict(), indent=2) if args.json else format_plan(plan), end="\n" if args.json else "")
    return 0
