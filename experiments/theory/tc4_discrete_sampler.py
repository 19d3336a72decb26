"""TC4 at full size: a gradient-informed discrete Langevin sampler, and nabla-Reasoner as a negative control.

    python -m experiments.theory.tc4_discrete_sampler [--seed 0] [--out experiments/theory/figures]

64-corner toy (V = 4, length 3; tiny attention policy, MLP reward). (i) MH-corrected sampler at alpha = 1,
2000 chains x 100 recorded steps (2 x 10^5 samples) after 200 burn-in steps; (ii) the same without MH for
alpha in {0.25, 0.5, 1, 2, 4}; (iii) the toy nabla-Reasoner (T = 20 Adam steps, lr 0.01 cosine-clipped at 0.1,
ST tau = 1, resampling temperature 0.5, N_max = 8, accept-if-higher-reward), 10^5 decodes per batch, at
lambda = 1 and 3, and once more with DTO switched off (learning rate 0) to see what the gradient step adds.
"""

import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from experiments.theory._common import finish, float64, parse_args, save
from experiments.theory.checks import tc4_discrete_sampler as tc4
from experiments.theory.statistics import total_variation


def main():
    args = parse_args(__doc__)
    started = time.time()
    config = tc4.FULL
    key = jax.random.key(args.seed)
    with float64():
        problem = tc4.make_problem(config, config.reward_coeff)
        runs, acceptance = tc4.sampler_distributions(config, jax.random.fold_in(key, 0), problem, config.step_size)
        rows = tc4.rows_from_sampler(config, problem, runs, acceptance)
        unadjusted = {}
        for i, alpha in enumerate(tqdm(config.unadjusted_step_sizes, desc="(ii) alphas")):
            unadjusted[alpha], _ = tc4.sampler_distributions(config, jax.random.fold_in(jax.random.fold_in(key, 1), i),
                                                             problem, alpha, metropolis=False)
        rows += tc4.unadjusted_rows_from(problem, unadjusted)
        reasoner = {}
        for i, lam in enumerate(tqdm(config.reasoner_reward_coeffs, desc="(iii) lambdas")):
            lam_problem = tc4.make_problem(config, lam)
            reasoner[lam] = (lam_problem, tc4.reasoner_distributions(config, jax.random.fold_in(
                jax.random.fold_in(key, 2), i), lam_problem, lam))
            rows += tc4.rows_from_reasoner(lam_problem, lam, reasoner[lam][1])
        # ablation: the same decoder with DTO switched off (learning rate 0), at the larger lambda
        lam = config.reasoner_reward_coeffs[-1]
        lam_problem = reasoner[lam][0]
        without_dto = tc4.reasoner_distributions(
            config, jax.random.fold_in(key, 3), lam_problem, lam,
            lambda p, c, keys: tc4.nabla_reasoner_batch(p, c, keys, learning_rate=0.0))
        rows += [row for row in tc4.rows_from_reasoner(lam_problem, lam, without_dto, "same, DTO off (lr 0)")
                 if "H(pi)" not in row.quantity and "E_pi" not in row.quantity]

        target = np.asarray(problem.target)
        order = np.argsort(-target)
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [2, 1]})
        left.plot(target[order], "k-", lw=2, label="rho* (lambda = 3)")
        left.plot(np.exp(np.asarray(problem.table.log_policy))[order], "k:", label="pi")
        left.plot(np.asarray(runs[0])[order], ".", label="discrete Langevin + MH")
        left.plot(np.asarray(unadjusted[config.step_size][0])[order], "x", ms=4, label="same, no MH")
        lam_problem, (reasoner_first, _) = reasoner[config.reward_coeff]
        left.plot(np.asarray(reasoner_first)[order], "s", ms=3, label="nabla-Reasoner (lambda = 3)")
        left.set_xlabel("sequence (sorted by rho*)")
        left.set_ylabel("probability")
        left.legend(fontsize=8)
        alphas = list(unadjusted)
        right.semilogx(alphas, [float(total_variation(unadjusted[a][0], problem.target)) for a in alphas], "o-",
                       label="no MH: TV(emp, rho*)")
        right.semilogx(alphas, [float(total_variation(*unadjusted[a])) for a in alphas], "s--",
                       label="two-run noise floor")
        right.axhline(float(total_variation(runs[0], problem.target)), color="C2", label="with MH (alpha = 1)")
        right.set_xticks(alphas, [f"{a:g}" for a in alphas])
        right.minorticks_off()
        right.set_xlabel("alpha")
        right.legend(fontsize=8)
        save(fig, args.out, "tc4_distributions.png")
    finish("TC4", rows, args.out, started)


if __name__ == "__main__":
    main()
