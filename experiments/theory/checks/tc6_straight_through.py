"""TC6: mechanics of the straight-through one-hot, Eq. 25 and gradient caching (unit level).

Subject: ``nabla_jax.dto.straight_through.straight_through_onehot`` (forward ``onehot(argmax z)``, backward the
Jacobian of ``softmax(z / tau)``), the caching of ``g = dL/dy`` while no argmax changes, and the delta_postfix
ablation (detaching the policy's context). Exact (0) for the forward and the cached trajectory, 1e-12 in
float64 for the gradient identities.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.theory import gradient_cache, toy_models
from experiments.theory.compilation import jit
from experiments.theory.report import CheckRow, at_least, at_most, documented
from nabla_jax.dto.straight_through import straight_through_onehot

NAME = "TC6"


class Config(NamedTuple):
    vocab: int
    length: int
    reward_coeff: float
    temperatures: tuple[float, ...]
    sweep_vocab: int  # vocabulary for the max-prob -> 1 sweep
    large_vocab: int  # uniform-distribution case (Qwen's vocabulary)
    cache_steps: int
    cache_learning_rate: float
    compare_autodiff: bool  # also report the distance to plain jax.grad of L(ST(z)) (not required to be 0)
    exact_tolerance: float = 1e-12


FULL = Config(vocab=16, length=5, reward_coeff=2.0, temperatures=(0.5, 1.0, 2.0), sweep_vocab=1024,
              large_vocab=151936, cache_steps=40, cache_learning_rate=0.05, compare_autodiff=True)
FAST = FULL._replace(compare_autodiff=False)


def _toy(config: Config, dtype):
    policy, reward_model = toy_models.init_models(3, config.vocab, config.length, dtype=dtype)
    loss = partial(toy_models.dto_loss, policy, reward_model, jnp.asarray(config.reward_coeff, dtype))
    return policy, reward_model, loss


def _random_logits(config: Config, seed: int, dtype):
    return jnp.asarray(2.0 * np.random.default_rng(seed).standard_normal((config.length, config.vocab)), dtype)


# temperatures are static: straight_through_onehot validates tau with a Python comparison
@jit(static_argnames=("straight_through", "temperatures"))
def _forward_errors(logits_by_dtype, temperatures, straight_through):
    def worst(z):
        hard = jax.nn.one_hot(jnp.argmax(z, axis=-1), z.shape[-1], dtype=z.dtype)
        return jnp.max(jnp.stack([jnp.max(jnp.abs(straight_through(z, tau) - hard)).astype(jnp.float32)
                                  for tau in temperatures]))

    return [worst(z) for z in logits_by_dtype]


def forward_rows(config: Config, straight_through: Callable = straight_through_onehot) -> list[CheckRow]:
    dtypes = (jnp.bfloat16, jnp.float32, jnp.float64)
    errors = _forward_errors([_random_logits(config, 0, dtype) for dtype in dtypes], config.temperatures,
                             straight_through)
    return [at_most(NAME, f"ST forward == onehot(argmax z), {jnp.dtype(dtype).name}, all tau", error, 0.0)
            for dtype, error in zip(dtypes, errors)]


@jit(static_argnames=("loss", "straight_through", "temperatures"))
def _gradient_errors(loss, straight_through, z, temperatures):
    identity_errors, eq25_errors = [], []
    for tau in temperatures:
        autodiff = jax.grad(lambda logits: loss(straight_through(logits, tau)))(z)
        g = jax.grad(loss)(straight_through(z, tau))  # dL/dy at the one-hot
        s = jax.nn.softmax(z / tau, axis=-1)
        jacobian = (jax.vmap(jnp.diag)(s) - s[:, :, None] * s[:, None, :]) / tau  # symmetric
        identity_errors.append(jnp.max(jnp.abs(autodiff - jnp.einsum("ivw,iw->iv", jacobian, g))))
        eq25 = s * (g - jnp.sum(s * g, axis=-1, keepdims=True))  # x_i ([dL/dx]_i - x^T dL/dx), valid at tau = 1
        eq25_errors.append(jnp.max(jnp.abs(autodiff - eq25)))
    return identity_errors, eq25_errors


def gradient_rows(config: Config, straight_through: Callable = straight_through_onehot) -> list[CheckRow]:
    _, _, loss = _toy(config, jnp.float64)
    z = _random_logits(config, 1, jnp.float64)
    identity_errors, eq25_errors = _gradient_errors(loss, straight_through, z, config.temperatures)
    rows = []
    for tau, identity_error, eq25_error in zip(config.temperatures, identity_errors, eq25_errors):
        rows.append(at_most(NAME, f"grad_z L(ST(z)) == (diag s - s s^T)/tau dL/dy, tau={tau:g}", identity_error,
                            config.exact_tolerance))
        if tau == 1.0:
            rows.append(at_most(NAME, "Eq. 25: dL/dz_i == x_i([dL/dx]_i - x^T dL/dx)", eq25_error,
                                config.exact_tolerance))
    return rows


@jit(static_argnames=("straight_through", "tau"))
def _vanishing(straight_through, g_small, g_large, scales, tau):
    vocab = g_small.shape[-1]

    def norm_ratio(z, g):
        grad = jax.grad(lambda logits: jnp.sum(g * straight_through(logits, tau)))(z)
        return grad, jnp.linalg.norm(grad) / jnp.linalg.norm(g)

    def at_scale(scale):
        z = scale * jax.nn.one_hot(0, vocab, dtype=g_small.dtype)
        _, ratio = norm_ratio(z, g_small)
        top = jax.nn.softmax(z / tau)[0]
        return ratio, top, ratio * tau / (2.0 * (1.0 - top))  # <= 1: Gershgorin bound |J| <= 2 (1 - p_max) / tau

    ratios, tops, bound_use = jax.vmap(at_scale)(scales)
    grad, large_ratio = norm_ratio(jnp.zeros_like(g_large), g_large)
    uniform_closed_form = (g_large - g_large.mean()) / (tau * g_large.shape[-1])
    return {"ratios": ratios, "tops": tops, "bound_use": jnp.max(bound_use), "large_ratio": large_ratio,
            "uniform_error": jnp.max(jnp.abs(grad - uniform_closed_form)) / jnp.max(jnp.abs(uniform_closed_form))}


def vanishing_rows(config: Config, straight_through: Callable = straight_through_onehot) -> list[CheckRow]:
    rng = np.random.default_rng(2)
    g_small = jnp.asarray(rng.standard_normal(config.sweep_vocab))
    g_large = jnp.asarray(rng.standard_normal(config.large_vocab))
    scales = jnp.arange(0.0, 41.0, 2.0)
    out = _vanishing(straight_through, g_small, g_large, scales, 1.0)
    return [
        at_most(NAME, "|grad_z| tau / (2 (1 - p_max) |g|) over a p_max sweep (bound)", out["bound_use"], 1.0),
        at_most(NAME, f"|grad_z| / |g| at 1 - p_max = {1.0 - float(out['tops'][-1]):.3g} (tolerance 2 (1 - p_max))",
                out["ratios"][-1], 2.0 * (1.0 - float(out["tops"][-1]))),
        documented(NAME, f"|grad_z| / |g| at p_max = {float(out['tops'][0]):.3g} (uniform, V={config.sweep_vocab})",
                   out["ratios"][0]),
        at_most(NAME, f"uniform over V={config.large_vocab}: rel. error vs (g - mean g)/(tau V)",
                out["uniform_error"], config.exact_tolerance),
        at_most(NAME, f"uniform over V={config.large_vocab}: |grad_z| / |g| (tolerance 1/V)", out["large_ratio"],
                1.0 / config.large_vocab),
    ]


def cache_rows(config: Config, straight_through: Callable = straight_through_onehot, invalidate: bool = True
               ) -> list[CheckRow]:
    """float32 Adam (lr ``cache_learning_rate``) with and without caching, from the policy's own logits.

    Both trajectories run the same compiled step (the caching flags are traced), so a difference can only come
    from reusing ``g``. ``invalidate=False`` is the broken variant that keeps a stale ``g``.
    """
    with jax.enable_x64(False):
        stats, cached, reference, args = cache_trajectories(config, straight_through, invalidate)
        difference = float(jnp.max(jnp.abs(cached - reference)))
        full, changes = int(stats.num_full), int(stats.num_argmax_changes)
        rows = [
            at_most(NAME, f"cached vs recomputed dL/dy, fp32 Adam, {config.cache_steps} steps: max |dz|",
                    difference, 0.0),
            at_least(NAME, "cache hits (steps reusing g)", config.cache_steps - full, 1),
            at_least(NAME, "argmax changes (cache invalidations exercised)", changes, 1),
        ]
        if config.compare_autodiff:
            autodiff = _autodiff_trajectory(*args)
            rows.append(documented(NAME, "cached vs jax.grad(L(ST(z))) each step: max |dz|",
                                   float(jnp.max(jnp.abs(cached - autodiff)))))
    return rows


def cache_trajectories(config: Config, straight_through: Callable = straight_through_onehot, invalidate=True):
    """float32 logits trajectories ``(steps, T, V)`` with caching and with recomputation at every step, the
    cached run's final state (its counters), and the arguments that rebuild them. Call with x64 disabled."""
    policy, _, loss = _toy(config, jnp.float32)
    start = toy_models.policy_log_probs(
        policy, jax.nn.one_hot(jnp.arange(config.length) % config.vocab, config.vocab, dtype=jnp.float32))
    args = (loss, partial(straight_through, tau=1.0), config.cache_learning_rate, config.cache_steps, start)
    stats, cached = _cached_trajectory(*args, True, invalidate)
    _, reference = _cached_trajectory(*args, False, True)
    return stats, cached, reference, args


@jit(static_argnames=("loss", "straight_through", "num_steps"))
def _cached_trajectory(loss, straight_through, learning_rate, num_steps, start, use_cache, invalidate):
    init, step = gradient_cache.cached_descent(loss, straight_through, optax.adam(learning_rate))

    def body(state, _):
        state = step(state, use_cache, invalidate)
        return state, state.logits

    return jax.lax.scan(body, init(start), None, length=num_steps)


@jit(static_argnames=("loss", "straight_through", "num_steps"))
def _autodiff_trajectory(loss, straight_through, learning_rate, num_steps, start):
    init, step = gradient_cache.autodiff_descent(loss, straight_through, optax.adam(learning_rate))

    def body(state, _):
        state = step(state)
        return state, state[0]

    return jax.lax.scan(body, init(start), None, length=num_steps)[1]


@jit(static_argnames="detached_loss")
def _postfix(policy, reward_model, reward_coeff, y, detached_loss):
    full = jax.grad(partial(toy_models.dto_loss, policy, reward_model, reward_coeff))(y)
    detached = jax.grad(detached_loss, argnums=3)(policy, reward_model, reward_coeff, y)
    # delta_postfix alone: the gradient that reaches y_l through the context of later positions
    postfix = -jax.grad(lambda c: jnp.sum(jax.lax.stop_gradient(y) * toy_models.policy_log_probs(policy, c)))(y)
    prefix = -toy_models.policy_log_probs(policy, y)  # delta_prefix_l = -log pi(. | y_<l)
    reward_term = -reward_coeff * jax.grad(partial(toy_models.reward, reward_model))(y)
    return {
        "postfix_identity": jnp.max(jnp.abs((full - detached) - postfix)),
        "kept_terms": jnp.max(jnp.abs(detached - (prefix + reward_term))),
        "postfix_norm": jnp.linalg.norm(postfix),
        "postfix_last": jnp.max(jnp.abs(postfix[-1])),
    }


def _detached_loss(policy, reward_model, reward_coeff, y):
    return toy_models.dto_loss(policy, reward_model, reward_coeff, y, detach_context=True)


def postfix_rows(config: Config, detached_loss: Callable = _detached_loss) -> list[CheckRow]:
    """The delta_postfix ablation: detaching the context must remove delta_postfix and nothing else."""
    policy, reward_model, _ = _toy(config, jnp.float64)
    y = jax.nn.one_hot(jnp.arange(config.length) * 3 % config.vocab, config.vocab, dtype=jnp.float64)
    out = _postfix(policy, reward_model, jnp.asarray(config.reward_coeff), y, detached_loss)
    return [
        at_most(NAME, "detach: (full - detached) == delta_postfix", out["postfix_identity"], config.exact_tolerance),
        at_most(NAME, "detach: detached == delta_prefix + lambda delta_reward", out["kept_terms"],
                config.exact_tolerance),
        at_most(NAME, "delta_postfix at the last position (no later tokens)", out["postfix_last"], 0.0),
        documented(NAME, "|delta_postfix| (non-zero: the ablation removes something)", out["postfix_norm"]),
    ]


def run(config: Config, seed: int = 0) -> list[CheckRow]:
    del seed  # deterministic
    return [*forward_rows(config), *gradient_rows(config), *vanishing_rows(config), *cache_rows(config),
            *postfix_rows(config)]
