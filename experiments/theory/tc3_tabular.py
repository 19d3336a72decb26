"""TC3 at full size: policy gradient = first variation, mirror descent -> rho*, token-level factorisation.

    python -m experiments.theory.tc3_tabular [--seed 0] [--out experiments/theory/figures]

V = 4, length 3 (64 sequences), lambda = 1; REINFORCE with 10^6 samples; mirror descent with eta = 0.1.
"""

import time

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments.theory import tabular
from experiments.theory._common import finish, float64, parse_args, save
from experiments.theory.checks import tc3_tabular as tc3


def main():
    args = parse_args(__doc__)
    started = time.time()
    config = tc3.FULL
    with float64():
        rows = tc3.run(config, seed=args.seed)
        problem = tabular.random_problem(args.seed, config.vocab, config.length, config.reward_coeff)
        log_target = tabular.target_log_probs(problem)
        log_prior = tabular.sequence_log_probs(problem.log_conditionals)
        steps = tc3.mirror_iterations(config)
        iterates = tabular.mirror_descent(log_prior, problem, config.mirror_step_size, steps)
        tv = np.asarray(0.5 * jnp.abs(jnp.exp(iterates) - jnp.exp(log_target)).reshape(steps + 1, -1).sum(-1))
        token_product = np.exp(np.asarray(tabular.sequence_log_probs(tabular.token_level_log_policy(problem))))

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    k = np.arange(steps + 1)
    left.semilogy(k, np.maximum(tv, 1e-17), label="TV(rho_k, rho*)")
    left.semilogy(k, tv[0] * (1 - config.mirror_step_size) ** k, "k--", label="TV_0 (1 - eta)^k")
    left.axhline(config.mirror_tolerance, color="r", lw=0.8, label="tolerance 1e-10")
    left.set_xlabel("mirror-descent iteration k")
    left.legend(fontsize=8)
    right.loglog(np.exp(np.asarray(log_target)).ravel(), token_product.ravel(), "o", ms=3)
    right.plot([1e-4, 1], [1e-4, 1], "k--", lw=0.8)
    right.set_xlabel("rho*(y)")
    right.set_ylabel("prod_t pi*(y_t | y_<t)")
    save(fig, args.out, "tc3_mirror_descent_and_factorisation.png")
    finish("TC3", rows, args.out, started)


if __name__ == "__main__":
    main()
