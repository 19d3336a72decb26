"""Helpers the tests share: tiny transformers checkpoints, the eager ∇-Reasoner reference, DTO fixtures, the
8-device sharding script, and the repository's root."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
