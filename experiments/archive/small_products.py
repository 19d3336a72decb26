"""How fast this CPU runs the products of a short pass: ``[m, 576] × [576, 1536]`` (SmolLM2's MLP shape) for growing
``m``, forward (``x W``) and as a backward pass takes it (``g Wᵀ``), each of 30 distinct weight matrices read from
memory, as a pass through 30 layers reads them.

    python -m experiments.archive.small_products [--rows 1,4,8,16,32,64,256]

It is the yardstick for the ∇-Reasoner's selector and DTO passes, which run over 8–32 ahead slots
(experiments/README.md, change 9): below 8 rows a product costs about what 8 rows cost, so passes are not cut
below 8 slots. Only ratios between rows of one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp

LAYERS, D, HIDDEN = 30, 576, 1536


def gflops(rows: int, transposed: bool, repeats: int = 7) -> float:
    """GFLOP/s of one product per layer over ``LAYERS`` distinct matrices, the median of ``repeats`` timed calls."""
    weights = [jax.random.normal(jax.random.key(i), (D, HIDDEN)) for i in range(LAYERS)]
    x = jnp.ones((rows, HIDDEN if transposed else D))
    product = (lambda x, w: jnp.dot(x, w.T)) if transposed else jnp.dot
    run = jax.jit(lambda x, ws: sum(product(x, w)[0, 0] for w in ws))
    run(x, weights).block_until_ready()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run(x, weights).block_until_ready()
        times.append(time.perf_counter() - began)
    return 2 * rows * D * HIDDEN * LAYERS / sorted(times)[repeats // 2] / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,4,8,16,32,64,256")
    args = parser.parse_args()
    print("load average %.2f %.2f %.2f" % os.getloadavg())
    print("  rows   x W (GFLOP/s)   g Wt (GFLOP/s)   time of x W relative to 8 rows")
    results = {int(m): (gflops(int(m), False), gflops(int(m), True)) for m in args.rows.split(",")}
    base = 8 / results[8][0] if 8 in results else None
    for rows, (forward, backward) in results.items():
        relative = f"{(rows / forward) / base:.2f}x" if base else "-"
        print(f"  {rows:4d}   {forward:13.0f}   {backward:14.0f}   {relative}")


if __name__ == "__main__":
    main()
