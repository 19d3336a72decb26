"""A gradient-informed discrete Langevin sampler on one-hot sequences (TC4 (i) and (ii)).

At the current one-hot ``y`` with ``g = dL/dy`` (the gradient DTO computes), each position proposes

    q(y'_i | y) ∝ exp(-g_i^T (y'_i - y_i) / 2 - |y'_i - y_i|^2 / (2 alpha)),

independently over positions; for one-hots ``|y'_i - y_i|^2`` is 2 when the token changes and 0 otherwise. With
the Metropolis-Hastings correction the chain's stationary law is ``rho* ∝ exp(-L)`` exactly; without it the
proposal's first-order (Taylor) error leaves a bias that grows with ``alpha``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from experiments.theory.compilation import jit
from experiments.theory.samplers import SamplingAlgorithm, StepInfo


class ChainState(NamedTuple):
    tokens: jax.Array  # (T,) int
    loss: jax.Array  # L(onehot(tokens))
    grad: jax.Array  # (T, V): dL/dy at onehot(tokens)


def tabulated_energy(table_loss: jax.Array, table_grad: jax.Array, vocab: int) -> Partial:
    """``tokens -> (L, dL/dy)`` read from exact per-corner tables (``toy_models.corner_table``): the chain then
    costs look-ups, which lets it run 10^5 chains in seconds on the 64-corner toy."""
    return Partial(_tabulated, table_loss, table_grad, vocab)


def _tabulated(table_loss, table_grad, vocab, tokens):
    index = jnp.sum(tokens * vocab ** jnp.arange(tokens.shape[-1] - 1, -1, -1))
    return table_loss[index], table_grad[index]


def proposal_log_probs(state: ChainState, step_size) -> jax.Array:
    """``log q(. | y)`` per position, ``(T, V)``."""
    current = jnp.take_along_axis(state.grad, state.tokens[:, None], axis=-1)
    changed = jnp.arange(state.grad.shape[-1])[None, :] != state.tokens[:, None]
    logits = -0.5 * (state.grad - current) - changed / step_size
    return jax.nn.log_softmax(logits, axis=-1)


def _log_proposal(tokens_to, origin: ChainState, step_size):
    return jnp.sum(jnp.take_along_axis(proposal_log_probs(origin, step_size), tokens_to[:, None], axis=-1))


def _init(energy, tokens):
    loss, grad = energy(tokens)
    return ChainState(tokens, loss, grad)


def _step(energy, step_size, metropolis, key, state):
    key_move, key_accept = jax.random.split(key)
    tokens = jax.random.categorical(key_move, proposal_log_probs(state, step_size), axis=-1).astype(state.tokens.dtype)
    proposal = _init(energy, tokens)
    log_ratio = (-(proposal.loss - state.loss) + _log_proposal(state.tokens, proposal, step_size)
                 - _log_proposal(proposal.tokens, state, step_size))
    passes_test = jnp.log(jax.random.uniform(key_accept, dtype=log_ratio.dtype)) < log_ratio
    accepted = jnp.logical_or(passes_test, jnp.logical_not(metropolis))  # metropolis is a traced flag
    new_state = jax.tree.map(lambda new, old: jnp.where(accepted, new, old), proposal, state)
    return new_state, StepInfo(accepted, jnp.minimum(1.0, jnp.exp(log_ratio)))


def discrete_langevin(energy: Callable, step_size, metropolis: bool = True) -> SamplingAlgorithm:
    """``energy``: ``tokens -> (L, dL/dy)``; ``metropolis=False`` is the unadjusted variant (ii)."""
    return SamplingAlgorithm(Partial(_init, energy), Partial(_step, energy, step_size, metropolis))


def visit_counts(algorithm: SamplingAlgorithm, key, tokens: jax.Array, vocab: int, num_burn_in: int,
                 num_recorded: int) -> tuple[jax.Array, jax.Array]:
    """Run chains from ``tokens (chains, T)``; count the states visited after burn-in.

    Returns ``(counts (V^T,), mean acceptance probability)``.
    """
    return _visit_counts(algorithm, key, tokens, vocab, num_burn_in, num_recorded)


@jit(loop_kernel=True, static_argnames="vocab")
def _visit_counts(algorithm, key, tokens, vocab, num_burn_in, num_recorded):
    num_chains, length = tokens.shape
    states = jax.vmap(algorithm.init)(tokens)
    batched_step = jax.vmap(algorithm.step)
    powers = vocab ** jnp.arange(length - 1, -1, -1)

    def body(i, carry):
        states, counts, acceptance = carry
        states, info = batched_step(jax.random.split(jax.random.fold_in(key, i), num_chains), states)
        recorded = i >= num_burn_in
        index = states.tokens @ powers
        counts = counts.at[index].add(recorded.astype(counts.dtype))
        return states, counts, acceptance + jnp.mean(info.acceptance_prob)

    counts = jnp.zeros(vocab**length, jnp.int32)
    total = num_burn_in + num_recorded
    _, counts, acceptance = jax.lax.fori_loop(0, total, body, (states, counts, jnp.zeros((), states.loss.dtype)))
    return counts, acceptance / total
