"""``nabla-jax cache info|clear``: the persistent compilation cache (where it is, how big, remove it)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache", help="show or clear the persistent compilation cache",
        description="The compiled programs every nabla-jax command keeps in $NABLA_JAX_CACHE_DIR/xla (default "
        "~/.cache/nabla-jax/xla), so a second run starts warm, and in its exports/ folder the largest programs whole, "
        "so a second run does not trace them. info: its place and size; clear: remove it.",
    )
    parser.add_argument("action", choices=("info", "clear"))
    parser.set_defaults(func=run, compile_cache=False)


def run(args) -> int:
    from nabla_jax import compile_cache

    directory = compile_cache.compile_cache_dir()
    if args.action == "clear":
        files, size = compile_cache.clear(directory)
        print(f"removed {directory} ({files} files, {size / 2**20:.1f} MiB)")
        return 0
    import os

    from nabla_jax.program_cache import FOLDER

    files, size = compile_cache.size_bytes(directory)
    state = "off (NABLA_JAX_NO_COMPILE_CACHE)" if compile_cache.disabled_by_environment() else "on"
    print(f"{directory}: {files} files, {size / 2**20:.1f} MiB; {state}")
    kept, kept_size = compile_cache.size_bytes(os.path.join(directory, FOLDER))
    if kept:
        print(f"  of which {FOLDER}/ (whole programs, read instead of traced): {kept} files, "
              f"{kept_size / 2**20:.1f} MiB")
    return 0
