"""``nabla-jax convert SRC DST``: any supported checkpoint to an Orbax directory, or to Hugging Face safetensors."""

from __future__ import annotations

from nabla_jax.bundled import bundled_names
from nabla_jax.commands.parsing import add_allow_nonfinite


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint (HF directory, .gguf, name) to an Orbax directory or HF safetensors",
        description="Convert SRC (a Hugging Face directory, a .gguf file, an Orbax directory or a bundled name: "
        + ", ".join(bundled_names()) + ") to DST: an Orbax checkpoint directory (default) or, with --to hf, a Hugging "
        "Face directory (config.json + safetensors + tokenizer) that transformers loads.",
    )
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--to", choices=("orbax", "hf"), default="orbax")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="default: keep the stored dtype")
    add_allow_nonfinite(parser)
    parser.add_argument("--max-shard-mb", type=float, default=None, help="HF output: split safetensors into shards")
    parser.set_defaults(func=run)


def run(args) -> int:
    from convert.hf import save_hf_params
    from convert.orbax_dir import save_orbax
    from nabla_jax.loading import resolve_checkpoint

    config, params, tokenizer = resolve_checkpoint(args.src, dtype=args.dtype, allow_nonfinite=args.allow_nonfinite)
    if args.to == "orbax":
        save_orbax(config, params, args.dst, tokenizer)
    else:
        max_bytes = int(args.max_shard_mb * 2**20) if args.max_shard_mb else None
        save_hf_params(config, params, args.dst, max_shard_bytes=max_bytes, tokenizer=tokenizer)
    print(f"wrote {config.architecture} ({args.to}) to {args.dst}")
    return 0
