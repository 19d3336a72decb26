"""The ``nabla-jax`` command line. Each subcommand lives in ``nabla_jax.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function of the parsed args."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import nabla_jax.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nabla-jax", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in sorted(pkgutil.iter_modules(nabla_jax.commands.__path__), key=lambda m: m.name):
        command = importlib.import_module(f"nabla_jax.commands.{module.name}")
        if hasattr(command, "register"):  # the others are helpers the commands share
            command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError, FloatingPointError) as err:  # OSError: a path not found, taken, or not writable
        print(f"nabla-jax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
