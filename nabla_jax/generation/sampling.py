"""Token sampling with the official ∇-Reasoner semantics: temperature, then top-k, then top-p.

* ``temperature == 0`` is greedy: the argmax, ties going to the lowest token id.
* ``top_k`` 0 (or None) and ``top_p`` 1.0 are off; tokens tied with the last kept one are always all kept.
* ``repetition_penalty`` 1.0 is off; otherwise it applies before everything else, to every token of the caller's
  ``seen`` mask (rollouts build it from their sequence buffer).

All functions work on ``[..., V]`` logits; settings are Python numbers (static under ``jit``). Each rule, and where
it differs from the official code (at temperature 0, and on exact ties): docs/design-notes.md.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings; frozen and hashable so it can be a static ``jit`` argument."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    # None: not chosen, the policy's generation_config.json decides (off without one); see NablaReasoner
    repetition_penalty: float | None = 1.0

    def __post_init__(self):
        top_k = 0 if self.top_k is None else self.top_k
        top_p = 1.0 if self.top_p is None else self.top_p
        validate_sampling(self.temperature, top_k, top_p)
        penalty = self.repetition_penalty
        if penalty is not None:
            if isinstance(penalty, (bool, jax.Array)) or not 0.0 < penalty < float("inf"):
                raise ValueError(f"repetition_penalty must be a finite number > 0 (1 means off), got {penalty}")
            object.__setattr__(self, "repetition_penalty", float(penalty))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_k", int(top_k))
        object.__setattr__(self, "top_p", float(top_p))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalty(self) -> float:
        """The repetition penalty applied (1.0: off, also when it was left to a generation_config.json)."""
        return 1.0 if self.repetition_penalty is None else self.repetition_penalty

    def replace(self, **changes) -> "SamplingConfig":
        return dataclasses.replace(self, **changes)


def validate_sampling(temperature, top_k, top_p) -> None:
    """Raise ``ValueError`` naming the bad setting."""
    if isinstance(temperature, jax.Array) or isinstance(top_k, jax.Array) or isinstance(top_p, jax.Array):
        raise TypeError("sampling settings must be Python numbers (they are static), not arrays")
    if not 0.0 <= temperature < float("inf"):  # also rejects NaN
        raise ValueError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and (int(top_k) != top_k or top_k < 0):
        raise ValueError(f"top_k must be an integer >= 0 (0 means off), got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 means off), got {top_p}")


def _as_config(temperature, top_k, top_p) -> SamplingConfig:
    if isinstance(temperature, SamplingConfig):
        return temperature
    return SamplingConfig(temperature, top_k, top_p)


def penalize_repetition(logits: jax.Array, seen: jax.Array, penalty: float) -> jax.Array:
    """``logits [..., V]`` with the tokens marked in ``seen [..., V]`` penalised: positive logits divided by
    ``penalty``, negative ones multiplied (``penalty`` 1 returns ``logits`` unchanged)."""
    if penalty == 1.0:
        return logits
    x = jnp.asarray(logits, jnp.float32)
    return jnp.where(seen, jnp.where(x > 0, x / penalty, x * penalty), x)


def seen_tokens(sequence: jax.Array, length, vocab: int) -> jax.Array:
    """``[V]`` bool: the tokens among ``sequence[:length]`` (prompt and output so far)."""
    real = jnp.arange(sequence.shape[0]) < length
    return jnp.zeros((vocab,), jnp.int32).at[jnp.clip(sequence, 0, vocab - 1)].add(real.astype(jnp.int32)) > 0


def first_argmax(x: jax.Array) -> jax.Array:
    """``jnp.argmax(x, axis=-1)`` as int32 (the first of tied maxima; the first NaN where there is one) from two plain
    reductions: XLA CPU compiles argmax's paired value/index reduction about 4× slower over a vocabulary."""
    top = jnp.max(x, axis=-1, keepdims=True)
    hit = (x == top) | jnp.isnan(x)
    return jnp.min(jnp.where(hit, jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape[-1]), axis=-1)


def filter_logits(logits: jax.Array, temperature=1.0, top_k=0, top_p=1.0) -> jax.Array:
    """float32 logits of the filtered distribution: scaled by 1/temperature, removed tokens at ``-inf``.

    ``temperature`` may also be a :class:`SamplingConfig`. For temperature 0 the result is 0 at the argmax
    and ``-inf`` elsewhere (a one-hot distribution)."""
    cfg = _as_config(temperature, top_k, top_p)
    x = jnp.asarray(logits, jnp.float32)
    vocab = x.shape[-1]
    if cfg.greedy:
        best = first_argmax(x)[..., None]
        return jnp.where(jnp.arange(vocab) == best, 0.0, -jnp.inf)
    x = x / cfg.temperature
    ranked = None  # the largest scaled logits, descending, when top-p needs them
    if 0 < cfg.top_k < vocab:
        ranked = jax.lax.top_k(x, cfg.top_k)[0]
        # the k-th value as the min of the k (they are sorted): XLA CPU rewrites ``ranked[..., -1:]``, a slice of its
        # TopK, into a full sort of the vocabulary, 40-85x slower on SmolLM2's (docs/design-notes.md)
        x = jnp.where(x >= jnp.min(ranked, axis=-1, keepdims=True), x, -jnp.inf)
    if cfg.top_p < 1.0:
        if ranked is None:
            ranked = -jnp.sort(-x, axis=-1)
        # Ties beyond the k-th value are missing from `ranked`, but they sit after it in rank order, so the
        # cut found within `ranked` is the same; the normaliser below covers every kept token.
        probs = jnp.exp(ranked - jax.nn.logsumexp(x, axis=-1, keepdims=True))
        mass_before = jnp.concatenate([jnp.zeros_like(probs[..., :1]), jnp.cumsum(probs, axis=-1)[..., :-1]], -1)
        kept = jnp.sum(mass_before <= cfg.top_p, axis=-1, keepdims=True)  # >= 1: the first has mass 0 before it
        cutoff = jnp.take_along_axis(ranked, kept - 1, axis=-1)
        x = jnp.where(x >= cutoff, x, -jnp.inf)
    return x


def filtered_distribution(logits: jax.Array, temperature=1.0, top_k=0, top_p=1.0) -> jax.Array:
    """Probabilities ``[..., V]`` that :func:`sample_token` draws from (exactly zero off the kept set)."""
    return jax.nn.softmax(filter_logits(logits, temperature, top_k, top_p), axis=-1)


def sample_token(logits: jax.Array, key: jax.Array, temperature=1.0, top_k=0, top_p=1.0) -> jax.Array:
    """One token id per row of ``logits [..., V]`` (int32). Deterministic for a given key.

    ``temperature`` may also be a :class:`SamplingConfig`. Greedy (temperature 0) ignores the key."""
    cfg = _as_config(temperature, top_k, top_p)
    if cfg.greedy:
        return first_argmax(logits)
    filtered = filter_logits(logits, cfg)
    return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)
