"""DTO step cost, measured side by side in one run on random models (float32, this machine):

1. a full DTO step (both models forward and backward) at prompt lengths 32, 128 and 512 with 64 ahead tokens,
   reusing the frozen prefix's keys/values against re-running the whole sequence (the official code's way);
2. a full step against a gradient-cached step (neither model runs);
3. optimiser-state memory of update_positions="first" (official code) against "all" (paper Alg. 2).

    python -m experiments.bench_dto [--hidden 256] [--layers 4] [--vocab 4096] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os

from experiments.timing import median_time


def state_bytes(models, config, problem, ahead: int, width: int) -> tuple[int, int]:
    """(variables + optimiser state, cached dL/dy) in bytes, from shapes only."""
    import jax
    import jax.numpy as jnp

    from nabla_jax.dto import dto_init

    init = jax.ShapeDtypeStruct((ahead, width), jnp.bfloat16)
    state = jax.eval_shape(lambda x: dto_init(models, config, problem, x), init)
    leaves = jax.tree_util.tree_leaves((state.variables, state.opt_state))
    optimised = sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)
    return optimised, state.grad_y.size * state.grad_y.dtype.itemsize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--ahead", type=int, default=64)
    parser.add_argument("--prompts", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from nabla_jax.compile_count import compile_requests
    from nabla_jax.dto import DTOConfig, build_prefix_cache, dto_init, dto_step, make_models, make_problem, stack
    from nabla_jax.models import decoder
    from nabla_jax.models.config import DecoderConfig, load_config

    base = dict(family="qwen2", vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=3 * args.hidden,
                num_layers=args.layers, num_heads=args.hidden // 32, num_kv_heads=max(1, args.hidden // 64),
                head_dim=32, qkv_bias=True, max_position_embeddings=4096)
    lm_cfg = DecoderConfig(kind="causal_lm", **base)
    rm_cfg = DecoderConfig(kind="sequence_classification", **base)
    models = make_models(lm_cfg, decoder.init_params(lm_cfg, jax.random.key(0)), rm_cfg,
                         decoder.init_params(rm_cfg, jax.random.key(1)))
    config = DTOConfig()  # official defaults: "first", "logits", grad caching
    a = args.ahead
    rng = np.random.RandomState(0)
    step = jax.jit(dto_step, static_argnums=1)
    prepare = jax.jit(lambda m, p: jax.vmap(lambda q: build_prefix_cache(m, q, a))(p))

    print(f"devices: {jax.devices()}; {os.cpu_count()} CPUs; policy and reward: {args.layers} layers, "
          f"d={args.hidden}, V={args.vocab} (float32); {a} ahead tokens; batch 1; median of {args.repeats}")
    print()
    print("1. one full DTO step (policy + reward forward and backward)")
    print(f"{'prompt':>8} {'prefix cache':>14} {'full re-forward':>16} {'ratio':>7} {'prefix pass (once/call)':>24} "
          f"{'per call, T full steps':>23}")
    cached_state = caches_kept = problems_kept = None
    for p in args.prompts:
        ids = rng.randint(4, args.vocab, p).tolist()
        problem = make_problem(ids, a, ids[: p // 2], [2, 5], (p, p, 8))
        problems = stack([problem])
        init = jnp.asarray(rng.randn(1, a, args.vocab), jnp.float32)
        state = jax.vmap(lambda q, x: dto_init(models, config, q, x))(problems, init)
        caches = jax.block_until_ready(prepare(models, problems))
        with_cache = lambda: jax.block_until_ready(step(models, config, problems, caches, state))
        reforward = lambda: jax.block_until_ready(step(models, config, problems, None, state))
        with_cache(), reforward()  # compile
        t_cache, t_full = median_time(with_cache, args.repeats), median_time(reforward, args.repeats)
        t_prefix = median_time(lambda: jax.block_until_ready(prepare(models, problems)), args.repeats)
        per_call = (t_full * config.max_iters) / (t_prefix + t_cache * config.max_iters)
        print(f"{p:>8} {t_cache * 1e3:>11.1f} ms {t_full * 1e3:>13.1f} ms {t_full / t_cache:>6.2f}x "
              f"{t_prefix * 1e3:>21.1f} ms {per_call:>22.2f}x")
        cached_state, caches_kept, problems_kept = state, caches, problems
    print(f"   T = {config.max_iters}; compiled step programs: {compile_requests('dto_step')} "
          "(one per prompt length, with and without the cache)")

    print()
    print("2. full step against a gradient-cached step (prompt %d, with the prefix cache)" % args.prompts[-1])
    full_state = step(models, config, problems_kept, caches_kept, cached_state)  # fills the cache
    assert bool(full_state.cache_valid[0]), "the first step changed the argmax; rerun with another seed"
    full = lambda: jax.block_until_ready(step(models, config, problems_kept, caches_kept, cached_state))
    cached = lambda: jax.block_until_ready(step(models, config, problems_kept, caches_kept, full_state))
    t_full, t_cached = median_time(full, args.repeats), median_time(cached, args.repeats)
    print(f"   full {t_full * 1e3:.1f} ms, cached {t_cached * 1e3:.2f} ms: a cached step costs "
          f"{t_cached / t_full:.1%} of a full one ({t_full / t_cached:.0f}x cheaper)")

    print()
    print("3. optimised variables + Adam state (float32), and the cached dL/dy, per problem (from shapes)")
    problem = make_problem([1, 2, 3], a, [1], [2])
    qwen = os.path.join(os.path.dirname(__file__), "..", "nabla_jax", "configs", "qwen2.5-7b-instruct.json")
    q_cfg = load_config(qwen)
    q_rm = q_cfg.replace(kind="sequence_classification")
    q_models = jax.eval_shape(lambda: make_models(q_cfg, decoder.param_shapes(q_cfg, jnp.bfloat16), q_rm,
                                                  decoder.param_shapes(q_rm, jnp.bfloat16)))
    rows = [("this model", models, a, args.vocab, args.hidden), ("Qwen2.5-7B", q_models, 1024, q_cfg.vocab_size,
                                                                  q_cfg.hidden_size)]
    print(f"{'model':>12} {'ahead':>6} {'embedder':>9} {'first':>12} {'all':>12} {'all/first':>10} "
          f"{'dL/dy cache first/all':>24}")
    for name, m, ahead, vocab, hidden in rows:
        for embedder, width in (("logits", vocab), ("latents", hidden)):
            sizes = {}
            for positions in ("first", "all"):
                c = DTOConfig(embedder=embedder, update_positions=positions)
                sizes[positions] = state_bytes(m, c, problem, ahead, width)
            mb = lambda n: next(f"{n / 2**k:.1f} {u}" for k, u in ((30, "GiB"), (20, "MiB"), (10, "KiB"), (0, "B"))
                                if n >= 2**k or k == 0)
            cache = f"{mb(sizes['first'][1])} / {mb(sizes['all'][1])}"
            print(f"{name:>12} {ahead:>6} {embedder:>9} {mb(sizes['first'][0]):>12} {mb(sizes['all'][0]):>12} "
                  f"{sizes['all'][0] / sizes['first'][0]:>9.0f}x {cache:>24}")


if __name__ == "__main__":
    main()
