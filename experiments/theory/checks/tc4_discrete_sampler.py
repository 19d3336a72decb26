"""TC4: do DTO's one-hot gradients give the KL-optimal policy? A discrete sampler, and the algorithm itself.

On the 64-corner toy (tiny attention policy + MLP reward on relaxed one-hots), ``rho* ∝ exp(-L) = pi exp(lambda r)``
is exact. (i) A gradient-informed discrete Langevin proposal built from ``g = dL/dy`` with Metropolis-Hastings
must sample ``rho*`` (TV within 1.5 times the two-run floor). (ii) Without MH it is biased, more so as ``alpha``
grows (reported). (iii) The toy nabla-Reasoner is a documented negative control: with a noise-free descent and a
reward-greedy acceptance test it is not expected to sample ``rho*``; the rows report how far it lands.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from experiments.theory import discrete_langevin, toy_models, toy_reasoner
from experiments.theory.compilation import jit
from experiments.theory.report import CheckRow, at_most, documented
from experiments.theory.statistics import empirical_distribution, entropy, total_variation

NAME = "TC4"


class Config(NamedTuple):
    vocab: int
    length: int
    model_seed: int
    reward_coeff: float  # for (i) and (ii)
    step_size: float  # alpha for (i)
    unadjusted_step_sizes: tuple[float, ...]  # alphas for (ii)
    num_chains: int
    num_burn_in: int
    num_recorded: int  # samples = num_chains * num_recorded per run
    reasoner_reward_coeffs: tuple[float, ...]
    num_reasoner_runs: int
    tv_factor: float = 1.5


FULL = Config(vocab=4, length=3, model_seed=0, reward_coeff=3.0, step_size=1.0,
              unadjusted_step_sizes=(0.25, 0.5, 1.0, 2.0, 4.0), num_chains=2000, num_burn_in=200, num_recorded=100,
              reasoner_reward_coeffs=(1.0, 3.0), num_reasoner_runs=10**5)
FAST = Config(vocab=4, length=3, model_seed=0, reward_coeff=3.0, step_size=1.0, unadjusted_step_sizes=(1.0,),
              num_chains=500, num_burn_in=30, num_recorded=40, reasoner_reward_coeffs=(1.0,), num_reasoner_runs=3000)


class Problem(NamedTuple):
    policy: toy_models.ToyPolicy
    reward_model: toy_models.ToyReward
    table: toy_models.CornerTable
    target: jax.Array  # rho* over the corners, from log pi + lambda r (not from the loss table)


def make_problem(config: Config, reward_coeff: float) -> Problem:
    policy, reward_model = toy_models.init_models(config.model_seed, config.vocab, config.length)
    table = toy_models.corner_table(policy, reward_model, reward_coeff, config.vocab, config.length)
    return Problem(policy, reward_model, table, _target(table, reward_coeff))


@jit
def _target(table, reward_coeff):
    return jax.nn.softmax(table.log_policy + reward_coeff * table.reward)


@jit(static_argnames=("num", "vocab", "length"))
def _policy_samples(key, log_policy, num, vocab, length):
    return toy_models.all_sequences(vocab, length)[jax.random.categorical(key, log_policy, shape=(num,))]


def sampler_distributions(config: Config, key, problem: Problem, step_size, metropolis=True, energy=None):
    """Two independent runs of the discrete Langevin sampler (chains start from ``pi``); ``energy`` is the
    subject (default: the exact corner table of ``L`` and ``dL/dy``)."""
    if energy is None:
        energy = discrete_langevin.tabulated_energy(problem.table.loss, problem.table.grad, config.vocab)
    algorithm = discrete_langevin.discrete_langevin(energy, step_size, metropolis)
    runs = []
    for run in range(2):
        run_key = jax.random.fold_in(key, run)
        start = _policy_samples(jax.random.fold_in(run_key, 0), problem.table.log_policy, config.num_chains,
                                config.vocab, config.length)
        counts, acceptance = discrete_langevin.visit_counts(algorithm, jax.random.fold_in(run_key, 1), start,
                                                            config.vocab, config.num_burn_in, config.num_recorded)
        runs.append(counts / counts.sum())
    return runs, acceptance


def sampler_rows(config: Config, key, problem: Problem, energy: Callable | None = None,
                 metropolis: bool = True) -> list[CheckRow]:
    runs, acceptance = sampler_distributions(config, key, problem, config.step_size, metropolis, energy)
    return rows_from_sampler(config, problem, runs, acceptance, metropolis)


def rows_from_sampler(config: Config, problem: Problem, runs, acceptance, metropolis: bool = True) -> list[CheckRow]:
    first, second = runs
    floor = total_variation(first, second)
    samples = config.num_chains * config.num_recorded
    label = "MH" if metropolis else "no MH"
    return [
        at_most(NAME, f"(i) discrete Langevin + {label}, alpha={config.step_size:g}, {samples:g} samples: "
                f"TV(emp, rho*)", total_variation(first, problem.target), config.tv_factor * floor, noise_floor=floor),
        documented(NAME, f"(i) acceptance rate, alpha={config.step_size:g}", acceptance),
        documented(NAME, "effect: TV(pi, rho*)", total_variation(jnp.exp(problem.table.log_policy), problem.target)),
    ]


def unadjusted_rows(config: Config, key, problem: Problem) -> list[CheckRow]:
    runs = {alpha: sampler_distributions(config, jax.random.fold_in(key, i), problem, alpha, False)[0]
            for i, alpha in enumerate(config.unadjusted_step_sizes)}
    return unadjusted_rows_from(problem, runs)


def unadjusted_rows_from(problem: Problem, runs_by_alpha) -> list[CheckRow]:
    return [documented(NAME, f"(ii) no MH, alpha={alpha:g}: TV(emp, rho*)", total_variation(first, problem.target),
                       noise_floor=total_variation(first, second))
            for alpha, (first, second) in runs_by_alpha.items()]


def reasoner_distributions(config: Config, key, problem: Problem, reward_coeff: float,
                           decode_batch: Callable | None = None):
    """Two independent batches of ``num_reasoner_runs`` decodes. ``decode_batch(problem, reward_coeff, keys)``
    returns tokens ``(runs, T)``: the subject (default: the toy nabla-Reasoner with the paper's settings)."""
    decode_batch = nabla_reasoner_batch if decode_batch is None else decode_batch
    runs = []
    for run in range(2):
        keys = jax.random.split(jax.random.fold_in(key, run), config.num_reasoner_runs)
        tokens = decode_batch(problem, reward_coeff, keys)
        index = toy_models.sequence_index(tokens, config.vocab)
        runs.append(empirical_distribution(index, config.vocab**config.length))
    return runs


def nabla_reasoner_batch(problem: Problem, reward_coeff: float, keys, **overrides) -> jax.Array:
    """Toy nabla-Reasoner decodes with the paper's settings; ``overrides`` replace ``ReasonerConfig`` fields
    (e.g. ``learning_rate=0.0`` switches DTO off, leaving resampling and the reward test)."""
    length = problem.table.grad.shape[1]
    reasoner_config = toy_reasoner.ReasonerConfig(reward_coeff)._replace(**overrides)
    return _decode_batch(problem.policy, problem.reward_model, reasoner_config, length, keys)


@jit(loop_kernel=True, static_argnames=("reasoner_config", "length"))
def _decode_batch(policy, reward_model, reasoner_config, length, keys):
    return jax.vmap(lambda k: toy_reasoner.decode(policy, reward_model, reasoner_config, k, length)[0])(keys)


def reasoner_rows(config: Config, key, decode_batch: Callable | None = None) -> list[CheckRow]:
    """Rows for the decoder ``decode_batch`` (see ``reasoner_distributions``; default: the toy nabla-Reasoner)."""
    rows = []
    for i, lam in enumerate(config.reasoner_reward_coeffs):
        problem = make_problem(config, lam)
        runs = reasoner_distributions(config, jax.random.fold_in(key, i), problem, lam, decode_batch)
        rows += rows_from_reasoner(problem, lam, runs)
    return rows


def rows_from_reasoner(problem: Problem, reward_coeff: float, runs, label: str = "nabla-Reasoner") -> list[CheckRow]:
    first, second = runs
    floor = total_variation(first, second)
    prior = jnp.exp(problem.table.log_policy)
    reward = problem.table.reward
    tag = f"(iii) {label}, lambda={reward_coeff:g}"
    return [
        documented(NAME, f"{tag}: TV(emp, rho*)", total_variation(first, problem.target), noise_floor=floor),
        documented(NAME, f"{tag}: TV(emp, pi)", total_variation(first, prior), noise_floor=floor),
        documented(NAME, f"{tag}: E_emp[r] (expected: E_rho*[r])", first @ reward, expected=problem.target @ reward),
        documented(NAME, f"{tag}: E_pi[r]", prior @ reward),
        documented(NAME, f"{tag}: entropy (expected: H(rho*))", entropy(first), expected=entropy(problem.target)),
        documented(NAME, f"{tag}: H(pi)", entropy(prior)),
    ]


def run(config: Config, seed: int = 0) -> list[CheckRow]:
    key = jax.random.key(seed)
    problem = make_problem(config, config.reward_coeff)
    return [
        *sampler_rows(config, jax.random.fold_in(key, 0), problem),
        *unadjusted_rows(config, jax.random.fold_in(key, 1), problem),
        *reasoner_rows(config, jax.random.fold_in(key, 2)),
    ]
