"""Seeds to PRNG keys, in one place.

``jax.random.key`` keeps only the low 32 bits of a seed when 64-bit types are off (the default), so seeds 0 and
2**32 would give the same stream. :func:`seed_key` folds the high half in, which keeps every seed below 2**32 on
exactly the key ``jax.random.key(seed)`` gives (and so every earlier result), and gives distinct seeds distinct
streams up to 2**64.
"""

from __future__ import annotations

import numbers

import jax

SEED_LIMIT = 2**64


def check_seed(seed, what: str = "seed") -> int:
    """``seed`` as an int, or ValueError naming it when it is not an integer in [0, 2**64)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{what} {seed} is out of range: seeds are integers in [0, 2**64)")
    return seed


def seed_key(seed) -> jax.Array:
    """The typed PRNG key of a seed in [0, 2**64): ``key(low 32 bits)``, with the high 32 bits folded in when
    they are not zero."""
    seed = check_seed(seed)
    key = jax.random.key(seed & 0xFFFFFFFF)
    high = seed >> 32
    return key if high == 0 else jax.random.fold_in(key, high)
