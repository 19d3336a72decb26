"""TC6: straight-through one-hot, Eq. 25, gradient caching and the delta_postfix ablation (unit level).

    python -m experiments.theory.tc6_straight_through [--seed 0] [--out experiments/theory/figures]

The subject is ``nabla_jax.dto.straight_through.straight_through_onehot``; the toy policy/reward of TC4 with
V = 16, length 5, lambda = 2 supplies a nonlinear loss. Unit-level, so the test suite runs the same sizes.
"""

import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments.theory._common import finish, float64, parse_args, save
from experiments.theory.checks import tc6_straight_through as tc6
from nabla_jax.dto.straight_through import straight_through_onehot


def main():
    args = parse_args(__doc__)
    started = time.time()
    config = tc6.FULL
    with float64():
        rows = tc6.run(config, seed=args.seed)
        vocab = config.sweep_vocab
        g = jnp.asarray(np.random.default_rng(args.seed).standard_normal(vocab))
        scales = jnp.linspace(0.0, 40.0, 81)

        def ratio(scale):
            z = scale * jax.nn.one_hot(0, vocab, dtype=g.dtype)
            grad = jax.grad(lambda logits: jnp.sum(g * straight_through_onehot(logits)))(z)
            return jnp.linalg.norm(grad) / jnp.linalg.norm(g), jax.nn.softmax(z)[0]

        ratios, tops = (np.asarray(a) for a in jax.jit(jax.vmap(ratio))(scales))
    with jax.enable_x64(False):
        stats, cached, reference, _ = tc6.cache_trajectories(config)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    gap = 1.0 - tops
    keep = gap > 0
    left.loglog(gap[keep], ratios[keep], "o", ms=3, label="|grad_z| / |g| (V = 1024)")
    left.loglog(gap[keep], 2 * gap[keep], "k--", label="bound 2 (1 - p_max)")
    left.axhline(1 / config.large_vocab, color="r", lw=0.8, label="uniform over 151936: 1/V")
    left.set_xlabel("1 - p_max")
    left.legend(fontsize=8)
    steps = np.arange(1, config.cache_steps + 1)
    for position in range(2):
        token = int(np.argmax(np.asarray(reference[-1, position])))
        right.plot(steps, np.asarray(reference[:, position, token]), "k-", lw=2, alpha=0.4,
                   label="recomputed dL/dy" if position == 0 else None)
        right.plot(steps, np.asarray(cached[:, position, token]), "--",
                   label=f"cached, position {position}")
    changed = np.any(np.diff(np.argmax(np.asarray(cached), -1), axis=0) != 0, axis=-1)
    for step in steps[1:][changed]:
        right.axvline(step, color="r", lw=0.5)
    right.set_xlabel("Adam step (red: an argmax changed, cache refreshed)")
    right.set_ylabel("logit of the final argmax")
    right.legend(fontsize=8)
    save(fig, args.out, "tc6_vanishing_and_cache.png")
    finish("TC6", rows, args.out, started)


if __name__ == "__main__":
    main()
