"""Command-line flags for the testbed training scripts: one ``--field-name`` per field of a settings dataclass."""

from __future__ import annotations

import argparse
import dataclasses


def add_settings_arguments(parser: argparse.ArgumentParser, settings_class) -> None:
    """``--field-name`` for every field of ``settings_class``, typed and defaulted as the field is."""
    defaults = settings_class()
    for field in dataclasses.fields(settings_class):
        value = getattr(defaults, field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(value), default=value)


def settings_from_args(settings_class, args: argparse.Namespace):
    """The ``settings_class`` instance the parsed ``args`` describe."""
    names = {field.name for field in dataclasses.fields(settings_class)}
    return settings_class(**{key: value for key, value in vars(args).items() if key in names})
