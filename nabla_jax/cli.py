"""The ``nabla-jax`` command line. Each subcommand lives in ``nabla_jax.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function of the parsed args."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
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
    global _command
    _command = args.command
    if args.compile_cache:
        from nabla_jax import compile_cache

        compile_cache.enable()
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError, FloatingPointError) as err:  # OSError: a path not found, taken, or not writable
        print(f"nabla-jax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every record is written whole (fsync per line), so a rerun resumes exactly
        print(_interrupted_message(), file=sys.stderr)
        return INTERRUPTED


_command = ""  # the subcommand running, for the interrupt message


def _interrupted_message() -> str:
    written = ""
    if "nabla_jax.evaluation.records" in sys.modules:
        written = f" after {sys.modules['nabla_jax.evaluation.records'].appended_this_process()} records"
    program = f"nabla-jax {_command}" if _command else "nabla-jax"
    return f"{program}: interrupted{written}; rerun the same command to resume"


def _exit_on_interrupt(signum, frame) -> None:
    """SIGINT in the program: say so and end the process at once, raising nothing. A KeyboardInterrupt raised
    inside Python code that XLA or pybind11 called from C++ aborts the process (SIGABRT), and the interpreter's
    teardown can crash while a compile still runs in XLA's threads (SIGSEGV); both were seen during a first compile.
    Ending here is a kill, which the records survive: every record file is appended line by line with fsync (a
    partial last line is dropped on reading) or replaced atomically, and the kernel drops the lock."""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a write interrupted mid-way; what it held is printed output, not records
        pass
    os.write(2, (_interrupted_message() + "\n").encode())
    os._exit(INTERRUPTED)


def entry() -> None:
    """The ``nabla-jax`` program: :func:`main`, then exit, with Ctrl-C ending it at once (:func:`_exit_on_interrupt`)."""
    signal.signal(signal.SIGINT, _exit_on_interrupt)
    sys.exit(main())


if __name__ == "__main__":
    entry()
