"""The error every checkpoint reader and writer raises for a bad checkpoint."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match its config."""
