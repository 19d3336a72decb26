"""TC2: 1-D Fokker-Planck <-> Wasserstein gradient flow <-> particles, on a bimodal (non-Gaussian) problem.

The PDE ``d_t rho = d_x(rho d_x L) + d_xx rho`` (Scharfetter-Gummel, implicit Euler, reflecting walls) starts from
``pi``; MALA particles start from ``pi`` too. Measured: (a) the free energy never increases; (b) ``dF/dt`` matches
the dissipation ``-int rho |d_x(L + log rho)|^2``; (c) ``rho_t -> rho*``; (d) particle histograms match the PDE
within 1.5 times the two-run noise floor; (e) the modes' masses. The relaxation time ``1 / gap`` and the time at
which ``|rho_t - rho*|_1 < 1e-3`` are reported: migration between the modes is the slow part.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.theory import fokker_planck as fp
from experiments.theory import mixture_1d, samplers
from experiments.theory.compilation import jit
from experiments.theory.report import CheckRow, at_most, documented
from experiments.theory.statistics import histogram, total_variation

NAME = "TC2"


class Config(NamedTuple):
    num_cells: int
    domain: tuple[float, float]
    reward_coeffs: tuple[float, ...]
    pde_time_step: float
    long_time: float  # the PDE continues to here (for (c)) with ``long_time_step``
    long_time_step: float
    times: tuple[float, ...]  # particle-vs-PDE comparison times; the last one ends the fine-step phase
    num_bins: int
    num_particles: int
    mala_step_size: float
    stationary_step_size: float  # particles continue at this MALA step for ``stationary_time`` (exact at rest)
    stationary_time: float
    mode_mass_tolerance: float | None  # None: 4 measured standard errors
    tv_factor: float = 1.5
    energy_tolerance: float = 1e-2
    l1_tolerance: float = 1e-3
    monotone_tolerance: float = 1e-12


FULL = Config(num_cells=2048, domain=(-6.0, 6.0), reward_coeffs=(1.0, 3.0), pde_time_step=5e-4, long_time=60.0,
              long_time_step=1e-2, times=(0.2, 1.0, 5.0), num_bins=64, num_particles=2**17, mala_step_size=2e-3,
              stationary_step_size=0.05, stationary_time=40.0, mode_mass_tolerance=0.01)
FAST = Config(num_cells=512, domain=(-6.0, 6.0), reward_coeffs=(3.0,), pde_time_step=1e-3, long_time=40.0,
              long_time_step=5e-2, times=(0.2, 1.0), num_bins=64, num_particles=2**12, mala_step_size=5e-3,
              stationary_step_size=0.1, stationary_time=30.0, mode_mass_tolerance=None)


class PdeResult(NamedTuple):
    grid: fp.Grid
    loss: jax.Array  # L at the cell centres
    target: jax.Array  # rho* at the cell centres, from pi and r directly
    snapshots: jax.Array  # (len(times), num_cells) densities at config.times
    free_energy: jax.Array  # per fine step, from t = 0
    dissipation: jax.Array  # per fine step, from t = 0
    long_free_energy: jax.Array  # per coarse step after the last time
    l1_to_target: jax.Array  # per coarse step after the last time
    final_density: jax.Array


def _densities(problem, grid):
    loss = jax.vmap(lambda x: mixture_1d.dto_loss(problem, x))(grid.centres)
    log_prior = jax.vmap(lambda x: mixture_1d.log_prior(problem, x))(grid.centres)
    log_reward = problem.reward_coeff * jax.vmap(lambda x: mixture_1d.reward(problem, x))(grid.centres)

    def normalised(log_density):
        weights = jnp.exp(log_density - log_density.max())
        return weights / (grid.width * weights.sum())

    return loss, normalised(log_prior), normalised(log_prior + log_reward)


@jit(loop_kernel=True, static_argnames=("solver", "num_cells", "domain", "fine_steps", "coarse_steps"))
def _solve(problem, solver, num_cells, domain, fine_steps, dt, coarse_steps, coarse_dt):
    grid = fp.make_grid(*domain, num_cells)
    loss, prior, target = _densities(problem, grid)
    measure = lambda d: (fp.free_energy(loss, d, grid.width), fp.dissipation(loss, d, grid.width))  # noqa: E731

    init, step = solver(loss, grid.width, dt)

    def fine(state, _):
        state = step(state)
        return state, (state.density, *measure(state.density))

    state, (densities, free, dissipated) = jax.lax.scan(fine, init(prior), None, length=fine_steps)
    _, coarse_step = solver(loss, grid.width, coarse_dt)

    def coarse(s, _):
        s = coarse_step(s)
        return s, (fp.free_energy(loss, s.density, grid.width), grid.width * jnp.sum(jnp.abs(s.density - target)))

    final, (long_free, l1) = jax.lax.scan(coarse, state, None, length=coarse_steps)
    f0, d0 = measure(prior)
    return (grid, loss, target, densities, jnp.concatenate([f0[None], free]), jnp.concatenate([d0[None], dissipated]),
            long_free, l1, final.density)


def solve_pde(config: Config, problem, solver: Callable = fp.implicit_euler_solver) -> PdeResult:
    """Run the PDE from ``pi`` (``solver`` is the subject: an ``(init, step)`` factory)."""
    fine_steps = round(config.times[-1] / config.pde_time_step)
    coarse_steps = round((config.long_time - config.times[-1]) / config.long_time_step)
    (grid, loss, target, densities, free, dissipated, long_free, l1, final) = _solve(
        problem, solver, config.num_cells, config.domain, fine_steps, config.pde_time_step, coarse_steps,
        config.long_time_step)
    snapshot_index = jnp.array([round(t / config.pde_time_step) - 1 for t in config.times])
    return PdeResult(grid, loss, target, densities[snapshot_index], free, dissipated, long_free, l1, final)


@jit
def _mode_boundary(result: PdeResult) -> jax.Array:
    """The barrier between the two modes of rho*: the highest L between its two lowest local minima."""
    loss = result.loss
    is_min = (loss[1:-1] < loss[:-2]) & (loss[1:-1] < loss[2:])
    minima = jnp.sort(jnp.argsort(jnp.where(is_min, loss[1:-1], jnp.inf))[:2] + 1)
    inside = (jnp.arange(loss.shape[0]) > minima[0]) & (jnp.arange(loss.shape[0]) < minima[1])
    return result.grid.centres[jnp.argmax(jnp.where(inside, loss, -jnp.inf))]


@jit
def _pde_summary(result: PdeResult, time_step, long_time_step, first_long_time, l1_tolerance):
    free = jnp.concatenate([result.free_energy, result.long_free_energy])
    rate = jnp.diff(result.free_energy) / time_step
    mid_dissipation = 0.5 * (result.dissipation[1:] + result.dissipation[:-1])
    resolved = mid_dissipation > 1e-8  # below this both sides are rounding noise
    long_times = first_long_time + long_time_step * jnp.arange(result.l1_to_target.shape[0])
    below = result.l1_to_target < l1_tolerance
    return {
        "increase": jnp.max(jnp.diff(free)),
        "mass_drift": jnp.abs(result.grid.width * jnp.sum(result.final_density) - 1.0),
        "target_free_energy": fp.free_energy(result.loss, fp.stationary_density(result.loss, result.grid.width),
                                             result.grid.width),
        "energy_error": jnp.max(jnp.where(resolved, jnp.abs(rate + mid_dissipation) / mid_dissipation, 0.0)),
        "relaxation_time": 1.0 / fp.spectral_gap(result.loss, result.grid.width),
        "mixing_time": jnp.where(below.any(), long_times[jnp.argmax(below)], jnp.inf),
        "final_l1": result.l1_to_target[-1],
    }


def pde_rows(config: Config, problem, result: PdeResult) -> list[CheckRow]:
    tag = f"lambda={float(problem.reward_coeff):g}"
    summary = _pde_summary(result, config.pde_time_step, config.long_time_step,
                           config.times[-1] + config.long_time_step, config.l1_tolerance)
    return [
        at_most(NAME, f"{tag} (a) max_n F(t_n+1) - F(t_n)", summary["increase"], config.monotone_tolerance),
        at_most(NAME, f"{tag} mass conservation |int rho_T - 1| (rounding only)", summary["mass_drift"], 1e-10),
        at_most(NAME, f"{tag} (b) max |dF/dt + D| / D", summary["energy_error"], config.energy_tolerance),
        at_most(NAME, f"{tag} (c) |rho_T - rho*|_1 at T={config.long_time:g}", summary["final_l1"],
                config.l1_tolerance),
        documented(NAME, f"{tag} relaxation time 1/gap", summary["relaxation_time"]),
        documented(NAME, f"{tag} first t with |rho_t - rho*|_1 < {config.l1_tolerance:g}", summary["mixing_time"]),
    ]


@jit(static_argnames="num_bins")
def _bin_masses(density, width, num_bins):
    return width * density.reshape(num_bins, -1).sum(axis=1)


class ParticleResult(NamedTuple):
    histograms: jax.Array  # (2 runs, len(times), num_bins)
    below_boundary: jax.Array  # (2 runs, 2 phases): left-mode fraction at the last time and after the long run
    boundary: jax.Array


def simulate_particles(config: Config, key, problem, result: PdeResult, potential: Callable | None = None,
                       sampler: Callable = samplers.mala, stationary_phase: bool = True) -> ParticleResult:
    """Two independent particle runs from ``pi``: histograms at ``config.times``, then a long run at the larger
    ``stationary_step_size`` (MALA is exact at stationarity) for the mode masses of ``rho*``.

    ``potential`` and ``sampler`` are the subject (defaults: the DTO loss and MALA); ``stationary_phase=False``
    skips the long run (its mode-mass row then repeats the last transient state)."""
    potential = mixture_1d.dto_loss_fn(problem) if potential is None else potential
    edges = jnp.asarray(np.linspace(*config.domain, config.num_bins + 1))
    transient = sampler(potential, config.mala_step_size)
    stationary = sampler(potential, config.stationary_step_size)
    boundary = _mode_boundary(result)

    histograms, below_boundary = [], []
    for run in range(2):
        run_key = jax.random.fold_in(key, run)
        states = samplers.init_particles(
            transient, mixture_1d.sample_prior(problem, jax.random.fold_in(run_key, 0), config.num_particles))
        run_histograms, done = [], 0
        for i, t in enumerate(config.times):
            steps = round(t / config.mala_step_size) - done
            states, _ = samplers.advance(transient, jax.random.fold_in(run_key, i + 1), states, steps)
            done += steps
            run_histograms.append(histogram(states.position, edges))
        at_last_time = _fraction_below(states.position, boundary)
        if stationary_phase:
            states, _ = samplers.advance(stationary, jax.random.fold_in(run_key, 99), states,
                                         round(config.stationary_time / config.stationary_step_size))
        histograms.append(jnp.stack(run_histograms))
        below_boundary.append(jnp.stack([at_last_time, _fraction_below(states.position, boundary)]))
    return ParticleResult(jnp.stack(histograms), jnp.stack(below_boundary), boundary)


def particle_rows(config: Config, key, problem, result: PdeResult, **subject) -> list[CheckRow]:
    """(d) TV on bins and (e) mode masses for ``simulate_particles(config, key, problem, result, **subject)``."""
    return rows_from_particles(config, problem, result, simulate_particles(config, key, problem, result, **subject))


def rows_from_particles(config: Config, problem, result: PdeResult, particles: ParticleResult) -> list[CheckRow]:
    tag = f"lambda={float(problem.reward_coeff):g}"
    summary = _particle_summary(result, problem, particles.histograms, particles.below_boundary, particles.boundary,
                                config.num_bins)
    rows = []
    for i, t in enumerate(config.times):
        floor = summary["floor"][i]
        rows.append(at_most(NAME, f"{tag} (d) TV(particles, PDE) at t={t:g}", summary["tv"][i],
                            config.tv_factor * floor, noise_floor=floor))
    rows.append(documented(NAME, f"{tag} effect: TV(pi, rho*) on the bins", summary["effect"]))
    t_last, t_stat = config.times[-1], config.times[-1] + config.stationary_time
    for phase, label, expected in [
        (0, f"particles t={t_last:g} vs PDE t={t_last:g}", float(summary["pde_left"])),
        (1, f"particles t={t_stat:g} vs rho*", float(summary["target_left"])),
    ]:
        se = math.sqrt(expected * (1 - expected) / config.num_particles)
        tolerance = 4 * se if config.mode_mass_tolerance is None else config.mode_mass_tolerance
        # two modes: the right mode's error equals the left mode's, so one row covers both
        rows.append(at_most(NAME, f"{tag} (e) mode mass error, {label}", summary["mass_error"][phase], tolerance,
                            noise_floor=summary["mass_floor"][phase]))
    rows.append(documented(NAME, f"{tag} (e) left-mode mass of pi", summary["prior_left"]))
    rows.append(documented(NAME, f"{tag} (e) left-mode mass of rho*", summary["target_left"]))
    rows.append(documented(NAME, f"{tag} (e) left-mode mass of PDE at t={t_last:g}", summary["pde_left"]))
    return rows


@jit
def _fraction_below(positions, boundary):
    return jnp.mean(positions < boundary)


@jit(static_argnames="num_bins")
def _particle_summary(result: PdeResult, problem, histograms, below_boundary, boundary, num_bins):
    """``histograms (2 runs, times, bins)``; ``below_boundary (2 runs, 2 phases)``."""
    width = result.grid.width
    pde_bins = jax.vmap(lambda d: _bin_masses(d, width, num_bins))(result.snapshots)
    prior = _prior_density(problem, result)
    left = result.grid.centres < boundary
    left_mass = lambda density: width * jnp.sum(jnp.where(left, density, 0.0))  # noqa: E731
    pde_left, target_left = left_mass(result.snapshots[-1]), left_mass(result.target)
    return {
        "tv": jax.vmap(total_variation)(histograms[0], pde_bins),
        "floor": jax.vmap(total_variation)(histograms[0], histograms[1]),
        "effect": total_variation(_bin_masses(prior, width, num_bins), _bin_masses(result.target, width, num_bins)),
        "pde_left": pde_left,
        "target_left": target_left,
        "prior_left": left_mass(prior),
        "mass_error": jnp.abs(below_boundary[0] - jnp.stack([pde_left, target_left])),
        "mass_floor": jnp.abs(below_boundary[0] - below_boundary[1]),
    }


def _prior_density(problem, result: PdeResult) -> jax.Array:
    return _densities(problem, result.grid)[1]


def run(config: Config, seed: int = 0) -> list[CheckRow]:
    rows = []
    for i, lam in enumerate(config.reward_coeffs):
        problem = mixture_1d.default_problem(lam)
        result = solve_pde(config, problem)
        rows += pde_rows(config, problem, result)
        rows += particle_rows(config, jax.random.fold_in(jax.random.key(seed), i), problem, result)
    return rows
