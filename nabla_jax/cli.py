"""The ``nabla-jax`` command line. Each subcommand lives in ``nabla_jax.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function of the parsed args."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import nabla_jax.commands

INTERRUPTED = 130  # the shell's code for a SIGINT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nabla-jax", description=__doc__.splitlines()[0])
    parser.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                        help="do not keep compiled programs in the persistent cache ($NABLA_JAX_CACHE_DIR/xla, default "
                        "~/.cache/nabla-jax/xla; NABLA_JAX_NO_COMPILE_CACHE=1 does the same)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in sorted(pkgutil.iter_modules(nabla_jax.commands.__path__), key=lambda m: m.name):
        command = importlib.import_module(f"nabla_jax.commands.{module.name}")
        if hasattr(command, "register"):  # the others are helpers the commands share
            command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.compile_cache:
        from nabla_jax import compile_cache

        compile_cache.enable()
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError, FloatingPointError) as err:  # OSError: a path not found, taken, or not writable
        print(f"nabla-jax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every record is written whole (fsync per line), so a rerun resumes exactly
        written = ""
        if "nabla_jax.evaluation.records" in sys.modules:
            written = f" after {sys.modules['nabla_jax.evaluation.records'].appended_this_process()} records"
        print(f"nabla-jax {args.command}: interrupted{written}; rerun the same command to resume", file=sys.stderr)
        return INTERRUPTED


def entry() -> None:
    """The ``nabla-jax`` program: :func:`main`, then exit. After an interrupt the process ends at once, without the
    interpreter's teardown: a compile still running in XLA's threads could crash it there (measured: 2 of 5
    interrupts during a first compile ended in SIGSEGV). Records are on disk line by line and the kernel drops the
    lock, so nothing is lost."""
    code = main()
    if code == INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
