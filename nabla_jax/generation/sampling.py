"""Token sampling with the official ∇-Reasoner semantics: temperature, then top-k, then top-p.

* ``temperature == 0`` is greedy: the argmax, ties going to the lowest token id (as ``torch.argmax``).
  (The official ``sample_token`` treats temperature <= 0 as 1.0 when resampling; vLLM, which does its
  rollouts, treats 0 as greedy. We follow vLLM for every use and say so here.)
* ``top_k`` 0 (or None) is off. Otherwise every token whose scaled logit is >= the k-th largest is kept, so
  tokens tied with the k-th are all kept (the official code's ``logits < topk[-1]`` rule).
* ``top_p`` 1.0 is off. Otherwise tokens are ranked by probability and a token is kept when the probability
  mass strictly before it is <= top_p: the nucleus includes the first token that crosses p (official rule).
  The cut is then applied by value, so tokens tied with the last kept one are all kept; the official code
  keeps an arbitrary subset of such ties (whatever its sort puts first). This differs only on exact ties.

* ``repetition_penalty`` 1.0 is off. Otherwise it applies, before everything else, to every token already seen
  in the prompt or the output (vLLM's and transformers' semantics, which the official rollouts get from
  Qwen2.5-Instruct's ``generation_config.json``: 1.05): a positive logit is divided by it, a negative one
  multiplied. The caller passes the ``seen`` mask; rollouts build it from their sequence buffer.

All functions work on ``[..., V]`` logits; settings are Python numbers (static under ``jit``).
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
    repetition_penalty: float = 1.0

    def __post_init__(self):
        top_k = 0 if self.top_k is None else self.top_k
        top_p = 1.0 if self.top_p is None else self.top_p
        penalty = 1.0 if self.repetition_penalty is None else self.repetition_penalty
        validate_sampling(self.temperature, top_k, top_p)
        if isinstance(penalty, jax.Array) or not 0.0 < penalty < float("inf"):
            raise ValueError(f"repetition_penalty must be a finite number > 0 (1 means off), got {penalty}")
        object.__setattr__(self, "repetition_penalty", float(penalty))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_k", int(top_k))
        object.__setattr__(self, "top_p", float(top_p))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


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
        # the k-th value as the min of the k (they are sorted): XLA CPU rewrote ``ranked[..., -1:]``, a slice of its
        # TopK, into a full sort of the vocabulary, 40-85x slower on SmolLM2's (experiments/README.md)
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
