"""TC2 at full size: 1-D Fokker-Planck <-> Wasserstein gradient flow <-> MALA particles (bimodal problem).

    python -m experiments.theory.tc2_fokker_planck [--seed 0] [--out experiments/theory/figures]

2048 Scharfetter-Gummel cells on [-6, 6], implicit Euler (dt = 5e-4 to t = 5, then 1e-2 to t = 60);
lambda = 1 and 3; two independent runs of 2^17 MALA particles (h = 2e-3), then 40 time units at h = 0.05.
"""

import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from experiments.theory import fokker_planck, mixture_1d
from experiments.theory._common import finish, float64, parse_args, save
from experiments.theory.checks import tc2_fokker_planck as tc2


def density_figure(config, lam, result, particles, out):
    edges = np.linspace(*config.domain, config.num_bins + 1)
    centres, width = 0.5 * (edges[1:] + edges[:-1]), edges[1] - edges[0]
    fig, axes = plt.subplots(1, len(config.times), figsize=(4.2 * len(config.times), 3.2), sharey=True)
    cells = np.asarray(result.grid.centres)
    for i, (ax, t) in enumerate(zip(axes, config.times)):
        ax.plot(cells, np.asarray(result.snapshots[i]), "k", lw=1.3, label="PDE rho_t")
        ax.step(centres, np.asarray(particles.histograms[0, i]) / width, where="mid", label="particles (run 1)")
        ax.plot(cells, np.asarray(result.target), "r--", lw=1, label="rho*")
        ax.set_title(f"lambda = {lam:g}, t = {t:g}")
        ax.set_xlim(-3.5, 3.5)
        ax.set_xlabel("x")
    axes[0].legend(fontsize=8)
    save(fig, out, f"tc2_density_lambda{lam:g}.png")


def main():
    args = parse_args(__doc__)
    started = time.time()
    config = tc2.FULL
    rows, curves, tv_bars = [], {}, {}
    with float64():
        for i, lam in enumerate(tqdm(config.reward_coeffs, desc="TC2 lambdas")):
            problem = mixture_1d.default_problem(lam)
            result = tc2.solve_pde(config, problem)
            particles = tc2.simulate_particles(config, jax.random.fold_in(jax.random.key(args.seed), i), problem,
                                               result)
            new_rows = tc2.pde_rows(config, problem, result) + tc2.rows_from_particles(config, problem, result,
                                                                                       particles)
            rows += new_rows
            density_figure(config, lam, result, particles, args.out)
            stationary = fokker_planck.stationary_density(result.loss, result.grid.width)
            target_free = float(fokker_planck.free_energy(result.loss, stationary, result.grid.width))
            fine_t = config.pde_time_step * np.arange(result.free_energy.shape[0])
            long_t = config.times[-1] + config.long_time_step * (1 + np.arange(result.long_free_energy.shape[0]))
            curves[lam] = (np.concatenate([fine_t, long_t]),
                           np.concatenate([np.asarray(result.free_energy), np.asarray(result.long_free_energy)])
                           - target_free, fine_t[1:], np.diff(np.asarray(result.free_energy)) / config.pde_time_step,
                           -0.5 * (np.asarray(result.dissipation[1:]) + np.asarray(result.dissipation[:-1])))
            tv_bars[lam] = [(r.measured, r.tolerance, r.noise_floor) for r in new_rows if "(d)" in r.quantity]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for lam, (t, free, rate_t, rate, dissipation) in curves.items():
        left.semilogy(t, np.maximum(free, 1e-14), label=f"lambda = {lam:g}")
        right.plot(rate_t, rate, label=f"dF/dt, lambda = {lam:g}")
        right.plot(rate_t, dissipation, "k:", lw=1)
    left.set_xlabel("t")
    left.set_ylabel("F(rho_t) - F(rho*)  (floor: rounding)")
    left.legend(fontsize=8)
    right.set_xlabel("t")
    right.set_ylabel("dF/dt (dotted: -int rho |d(L + log rho)|^2)")
    right.set_xlim(0, config.times[-1])
    right.legend(fontsize=8)
    save(fig, args.out, "tc2_free_energy.png")

    fig, ax = plt.subplots(figsize=(6, 3.4))
    labels, width = [], 0.35
    for k, (lam, bars) in enumerate(tv_bars.items()):
        for j, (tv, tolerance, floor) in enumerate(bars):
            x = k * (len(bars) + 1) + j
            ax.bar(x - width / 2, tv, width, color="C0", label="TV(particles, PDE)" if x == 0 else None)
            ax.bar(x + width / 2, floor, width, color="C1", label="two-run noise floor" if x == 0 else None)
            ax.hlines(tolerance, x - 0.45, x + 0.45, colors="k", label="1.5 x floor" if x == 0 else None)
            labels.append((x, f"l={lam:g}\nt={config.times[j]:g}"))
    ax.set_xticks([x for x, _ in labels], [s for _, s in labels], fontsize=8)
    ax.set_ylabel("total variation on 64 bins")
    ax.legend(fontsize=8)
    save(fig, args.out, "tc2_tv_floor.png")
    finish("TC2", rows, args.out, started)


if __name__ == "__main__":
    main()
