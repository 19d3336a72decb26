"""TC1 at full size: Gaussian-quadratic case, particles against the closed-form Wasserstein gradient flow.

    python -m experiments.theory.tc1_gaussian [--seed 0] [--out experiments/theory/figures]

d = 4, 2^16 particles (exact OU, MALA), Euler-Maruyama at dt = 1e-2, 5e-3, 2.5e-3 on 2^14 coupled particles.
"""

import math
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from experiments.theory import gaussian
from experiments.theory._common import finish, float64, parse_args, save
from experiments.theory.checks import tc1_gaussian as tc1


def figures(config, problem, key, out):
    times = [*config.times, math.inf]
    initial = gaussian.sample_prior(problem, jax.random.fold_in(key, 0), config.num_particles)
    samples = [gaussian.exact_transition(problem, jax.random.fold_in(key, i + 1), initial, t)
               for i, t in enumerate(times)]

    fig, axes = plt.subplots(1, len(times), figsize=(4 * len(times), 3.2), sharey=True)
    grid = np.linspace(-5, 5, 400)
    for ax, t, x in zip(axes, times, samples):
        mean, cov = gaussian.flow_moments(problem, t)
        ax.hist(np.asarray(x[:, 0]), bins=80, density=True, alpha=0.45, label="particles (exact OU)")
        density = np.exp(-0.5 * (grid - float(mean[0])) ** 2 / float(cov[0, 0])) / math.sqrt(2 * math.pi * cov[0, 0])
        ax.plot(grid, density, "k", lw=1.5, label="closed-form flow")
        ax.set_title(f"t = {t:g}")
        ax.set_xlabel("x_0")
    axes[0].legend(fontsize=8)
    save(fig, out, "tc1_density.png")

    objective = jax.jit(gaussian.kl_regularised_objective)
    target_value = float(objective(problem, *gaussian.flow_moments(problem, math.inf)))
    curve_t = np.linspace(0, 5, 200)
    curve = [float(objective(problem, *gaussian.flow_moments(problem, t))) - target_value for t in curve_t]
    fitted = [float(objective(problem, x.mean(0), jnp.cov(x.T))) - target_value for x in samples[:-1]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(curve_t, curve, "k", label="closed form L_PPO(m_t, S_t) - L_PPO(rho*)")
    ax.semilogy(config.times, fitted, "o", label="particles (Gaussian fit)")
    ax.set_xlabel("t")
    ax.set_ylabel("free energy above its minimum")
    ax.legend(fontsize=8)
    save(fig, out, "tc1_free_energy.png")

    steps = np.geomspace(1e-3, 5e-2, 12)
    continuous = gaussian.flow_moments(problem, config.em_time)
    biases = []
    for h in steps:
        n = round(config.em_time / h)
        mean, cov = gaussian.euler_maruyama_moments(problem, config.em_time / n, n)
        biases.append(float(jnp.sqrt(jnp.sum((mean - continuous[0]) ** 2) + jnp.sum((cov - continuous[1]) ** 2))))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(steps, biases, "o-", label="Euler-Maruyama law (exact recursion)")
    ax.loglog(steps, biases[0] * steps / steps[0], "k--", label="slope 1")
    ax.set_xlabel("dt")
    ax.set_ylabel(f"moment bias at t = {config.em_time:g}")
    ax.legend(fontsize=8)
    save(fig, out, "tc1_em_bias.png")


def main():
    args = parse_args(__doc__)
    started = time.time()
    config = tc1.FULL
    with float64():
        problem = tc1.problem_for(config, args.seed)
        key = jax.random.key(args.seed)
        rows = []
        parts = [tc1.exact_flow_rows, tc1.mala_rows, tc1.euler_maruyama_rows, tc1.gradient_rows]
        for i, part in enumerate(tqdm(parts, desc="TC1 parts")):
            rows += part(config, jax.random.fold_in(key, i + 1), problem)
        figures(config, problem, jax.random.fold_in(key, 99), args.out)
    finish("TC1", rows, args.out, started)


if __name__ == "__main__":
    main()
