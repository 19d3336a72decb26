"""TC3: first variation = policy gradient, mirror descent -> rho*, and the token-level factorisation of rho*.

On a toy sequence space (V = 4, length 3: 64 sequences) everything is an exact sum: (a) autodiff of
``L_PPO(softmax theta)`` against ``rho (Phi - E_rho Phi)`` (tabular logits, and per-prefix autoregressive
logits); (b) REINFORCE against (a); (c) mirror descent against ``rho*``; (d) the product of the token-level
policies ``pi*(y_t | y_<t) ∝ pi(y_t | y_<t) exp V(y_<=t)`` against ``rho*``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.theory import tabular
from experiments.theory.compilation import jit
from experiments.theory.report import CheckRow, at_most, documented
from experiments.theory.statistics import total_variation

NAME = "TC3"


class Config(NamedTuple):
    vocab: int
    length: int
    reward_coeff: float
    num_reinforce: int
    mirror_step_size: float
    z_tolerance: float = 4.0
    exact_tolerance: float = 1e-12
    mirror_tolerance: float = 1e-10


FULL = Config(vocab=4, length=3, reward_coeff=1.0, num_reinforce=10**6, mirror_step_size=0.1)
FAST = Config(vocab=4, length=3, reward_coeff=1.0, num_reinforce=10**5, mirror_step_size=0.1)


class Subject(NamedTuple):
    """The implementations under test (swap one for a broken version to see the check fail)."""

    policy_gradient: Callable = tabular.policy_gradient
    autoregressive_policy_gradient: Callable = tabular.autoregressive_policy_gradient
    reinforce_estimate: Callable = tabular.reinforce_estimate
    mirror_descent_step: Callable = tabular.mirror_descent_step
    token_level_log_policy: Callable = tabular.token_level_log_policy


def mirror_iterations(config: Config) -> int:
    """``ceil(log(1e-10) / log(1 - eta))``, the iteration count of paper.md §3.3 (c)."""
    return math.ceil(math.log(config.mirror_tolerance) / math.log(1 - config.mirror_step_size))


@jit(static_argnames=("subject", "num_reinforce", "mirror_steps"))
def _measure(problem, theta, theta_tables, key, subject: Subject, num_reinforce, mirror_step_size, mirror_steps):
    objective = lambda log_rho: tabular.kl_objective(log_rho, problem)  # noqa: E731
    autodiff = jax.grad(lambda th: objective(tabular.flat_log_softmax(th)))(theta)
    autodiff_tables = jax.grad(lambda ts: objective(tabular.autoregressive_log_probs(ts)))(theta_tables)
    closed_tables = subject.autoregressive_policy_gradient(theta_tables, problem)
    estimate, standard_error = subject.reinforce_estimate(key, theta, problem, num_reinforce)

    log_target = tabular.target_log_probs(problem)
    log_prior = tabular.sequence_log_probs(problem.log_conditionals)
    iterates = tabular.mirror_descent(log_prior, problem, mirror_step_size, mirror_steps,
                                      step=subject.mirror_descent_step)
    deviation = log_prior - log_target  # log rho_0 - log rho*; the iterates shrink it by (1 - eta) per step
    centred = deviation - jnp.sum(jnp.exp(log_target) * deviation)
    first_order_tv = 0.5 * (1 - mirror_step_size) ** mirror_steps * jnp.sum(jnp.exp(log_target) * jnp.abs(centred))

    token_product = tabular.sequence_log_probs(subject.token_level_log_policy(problem))
    return {
        "tabular": jnp.max(jnp.abs(autodiff - subject.policy_gradient(theta, problem))),
        "autoregressive": jnp.max(jnp.stack([jnp.max(jnp.abs(a - c)) for a, c in zip(autodiff_tables, closed_tables)])),
        "reinforce_z": jnp.max(jnp.abs(estimate - autodiff) / standard_error),
        "reinforce_se": jnp.max(standard_error),
        "mirror_tv": total_variation(jnp.exp(iterates[-1]), jnp.exp(log_target)),
        "mirror_first_order_tv": first_order_tv,
        "token_product": jnp.max(jnp.abs(jnp.exp(token_product) - jnp.exp(log_target))),
        "effect": total_variation(jnp.exp(log_prior), jnp.exp(log_target)),
    }


def run(config: Config, seed: int = 0, subject: Subject = Subject()) -> list[CheckRow]:
    problem = tabular.random_problem(seed, config.vocab, config.length, config.reward_coeff)
    rng = np.random.default_rng(seed + 1)
    theta = jnp.asarray(rng.standard_normal((config.vocab,) * config.length))
    theta_tables = [jnp.asarray(rng.standard_normal((config.vocab,) * (t + 1))) for t in range(config.length)]
    steps = mirror_iterations(config)
    m = _measure(problem, theta, theta_tables, jax.random.key(seed), subject, config.num_reinforce,
                 config.mirror_step_size, steps)
    exact = config.exact_tolerance
    return [
        at_most(NAME, "(a) tabular: max |autodiff - rho (Phi - <Phi>)|", m["tabular"], exact),
        at_most(NAME, "(a) autoregressive: max |autodiff - closed form|", m["autoregressive"], exact),
        at_most(NAME, f"(b) REINFORCE n={config.num_reinforce:g}: max |est - (a)| / SE", m["reinforce_z"],
                config.z_tolerance, noise_floor=1.0),
        at_most(NAME, f"(c) mirror descent eta={config.mirror_step_size:g}, {steps} steps: TV(rho_k, rho*)",
                m["mirror_tv"], config.mirror_tolerance, expected=m["mirror_first_order_tv"]),
        at_most(NAME, "(d) max |prod_t pi*(y_t|y_<t) - rho*(y)|", m["token_product"], exact),
        documented(NAME, "effect: TV(pi, rho*)", m["effect"]),
    ]
