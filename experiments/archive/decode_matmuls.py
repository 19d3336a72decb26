"""The floor of SmolLM2's decode step on XLA CPU: the 30 layers' matmuls alone, at SmolLM2's shapes, in a compiled
loop (no attention, norms, cache or LM head), with q/k/v and gate/up as separate dots, fused into one, and fused with
transposed kernels. What the decoder's step costs beyond these is attention, the LM head and the rest
(experiments/README.md, change 7).

    python -m experiments.archive.decode_matmuls [--batches 1,8,32]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

LAYERS, D, FF, KV = 30, 576, 1536, 192  # SmolLM2-135M


def weights(rng):
    w = lambda *shape: jnp.asarray(rng.standard_normal(shape) * 0.02, jnp.float32)  # noqa: E731
    separate = [dict(q=w(D, D), k=w(D, KV), v=w(D, KV), o=w(D, D), g=w(D, FF), u=w(D, FF), dn=w(FF, D))
                for _ in range(LAYERS)]
    fused = [dict(qkv=jnp.concatenate([p["q"], p["k"], p["v"]], 1), o=p["o"],
                  gu=jnp.concatenate([p["g"], p["u"]], 1), dn=p["dn"]) for p in separate]
    transposed = [{name: x.T for name, x in p.items()} for p in fused]
    return separate, fused, transposed


def mix(q, k, v):  # stands in for attention: keeps q, k and v live at the right width
    return q + jnp.tile(k + v, (1, D // KV))


def step_separate(x, layers):
    for p in layers:
        x = x + mix(x @ p["q"], x @ p["k"], x @ p["v"]) @ p["o"]
        x = x + (jax.nn.silu(x @ p["g"]) * (x @ p["u"])) @ p["dn"]
    return x


def step_fused(x, layers, dot=jnp.matmul):
    for p in layers:
        h = dot(x, p["qkv"])
        x = x + dot(mix(h[:, :D], h[:, D:D + KV], h[:, D + KV:]), p["o"])
        gu = dot(x, p["gu"])
        x = x + dot(jax.nn.silu(gu[:, :FF]) * gu[:, FF:], p["dn"])
    return x


def step_transposed(x, layers):
    return step_fused(x, layers, lambda a, w: jax.lax.dot_general(a, w, (((1,), (1,)), ((), ()))))


def ms_per_step(step, x, layers, steps: int = 16) -> float:
    run = jax.jit(lambda x, ps: jax.lax.fori_loop(0, steps, lambda i, h: jnp.tanh(step(h, ps)), x))
    run(x, layers).block_until_ready()
    times = []
    for _ in range(3):
        began = time.perf_counter()
        run(x, layers).block_until_ready()
        times.append(time.perf_counter() - began)
    return 1e3 * min(times) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    separate, fused, transposed = weights(rng)
    for batch in (int(b) for b in args.batches.split(",")):
        x = jnp.asarray(rng.standard_normal((batch, D)), jnp.float32)
        cells = [f"{name} {ms_per_step(step, x, layers):.1f}" for name, step, layers in
                 (("separate", step_separate, separate), ("fused", step_fused, fused),
                  ("fused, transposed kernels", step_transposed, transposed))]
        print(f"batch {batch:2d}: ms per step of the 30 layers' matmuls: {', '.join(cells)}  "
              f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
