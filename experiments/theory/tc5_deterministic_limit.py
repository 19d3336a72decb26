"""TC5 at full size: the noise-free limit DTO runs, temperature/coefficient rescaling, the probability-flow ODE.

    python -m experiments.theory.tc5_deterministic_limit [--seed 0] [--out experiments/theory/figures]

Gaussian problem in d = 4 with 2^16 particles; bimodal problem of TC2 at lambda = 3; c = 1e-3 (the official
code's nll_coeff); RK4 with dt = 1e-3 on 2^12 moment-matched particles.
"""

import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from experiments.theory import gaussian, mixture_1d, samplers
from experiments.theory._common import finish, float64, parse_args, save
from experiments.theory.checks import tc5_deterministic_limit as tc5


def collapse_figure(config, problem, key, out):
    """Spread of descent particles against Langevin particles, and where descent leaves the bimodal mass."""
    start = gaussian.sample_prior(problem, key, 4096)
    spreads = {}
    for name, temperature in [("gradient descent (DTO)", 0.0), ("Langevin (Euler-Maruyama)", 1.0)]:
        algorithm = samplers.euler_maruyama(gaussian.dto_loss_fn(problem), config.descent_step_size, temperature)
        states, trace = samplers.init_particles(algorithm, start), []
        for i in range(40):
            states, _ = samplers.advance(algorithm, jax.random.fold_in(key, i), states, config.descent_steps // 40)
            trace.append(float(jnp.max(jnp.var(states.position, axis=0))))
        spreads[name] = trace
    bimodal = mixture_1d.default_problem(config.bimodal_reward_coeff)
    algorithm = samplers.gradient_descent(mixture_1d.dto_loss_fn(bimodal), config.descent_step_size)
    states = samplers.init_particles(algorithm, mixture_1d.sample_prior(bimodal, key, 4096))
    states, _ = samplers.advance(algorithm, key, states, config.descent_steps)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = (1 + np.arange(40)) * (config.descent_steps // 40)
    for name, trace in spreads.items():
        left.semilogy(steps, np.maximum(trace, 1e-32), label=name)
    left.axhline(config.collapse_tolerance, color="r", lw=0.8, label="1e-8")
    left.set_xlabel("step")
    left.set_ylabel("max_j Var(x_j)")
    left.legend(fontsize=8)
    grid = np.linspace(-3, 3, 600)
    log_prior = jax.vmap(lambda x: mixture_1d.log_prior(bimodal, x))(grid)
    log_target = log_prior + bimodal.reward_coeff * jax.vmap(lambda x: mixture_1d.reward(bimodal, x))(grid)
    width = grid[1] - grid[0]
    right.plot(grid, np.exp(log_prior), "k:", label="pi")
    right.plot(grid, np.exp(log_target) / (np.exp(log_target).sum() * width), "r--", label="rho*")
    ends = np.asarray(states.position)
    for minimum in np.unique(np.round(ends, 6)):
        right.vlines(minimum, 0, np.mean(np.isclose(ends, minimum, atol=1e-6)), lw=4,
                     label=f"descent endpoints: {np.mean(np.isclose(ends, minimum, atol=1e-6)):.2f} at {minimum:.2f}")
    right.set_xlabel("x")
    right.legend(fontsize=7)
    save(fig, out, "tc5_descent_collapse.png")


def flow_figure(config, problem, key, out):
    """A few probability-flow trajectories (deterministic) inside the closed-form m_t +- 2 sd band."""
    start = gaussian.sample_prior_moment_matched(problem, key, 256)
    times = np.linspace(0, 2, 41)
    positions, path = start, [np.asarray(start[:12, 0])]
    for t0, t1 in zip(times[:-1], times[1:]):
        positions = gaussian.integrate_probability_flow(problem, positions, t0, t1, config.flow_time_step)
        path.append(np.asarray(positions[:12, 0]))
    moments = [gaussian.flow_moments(problem, t) for t in times]
    mean = np.array([float(m[0]) for m, _ in moments])
    sd = np.array([float(np.sqrt(s[0, 0])) for _, s in moments])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.fill_between(times, mean - 2 * sd, mean + 2 * sd, alpha=0.2, label="closed form m_t +- 2 sd")
    ax.plot(times, np.array(path), lw=0.8)
    ax.set_xlabel("t")
    ax.set_ylabel("x_0")
    ax.legend(fontsize=8)
    save(fig, out, "tc5_probability_flow.png")


def main():
    args = parse_args(__doc__)
    started = time.time()
    config = tc5.FULL
    key = jax.random.key(args.seed)
    with float64():
        problem = gaussian.random_problem(args.seed, config.dim)
        rows = []
        parts = [tc5.descent_rows, tc5.rescaling_rows, tc5.coefficient_rows, tc5.flow_rows]
        for i, part in enumerate(tqdm(parts, desc="TC5 parts")):
            rows += part(config, jax.random.fold_in(key, i), problem)
        collapse_figure(config, problem, jax.random.fold_in(key, 10), args.out)
        flow_figure(config, problem, jax.random.fold_in(key, 11), args.out)
    finish("TC5", rows, args.out, started)


if __name__ == "__main__":
    main()
