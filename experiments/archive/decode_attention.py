"""SmolLM2's single-query attention alone, as the decode step runs it: 30 layers, each writing its new key/value
into its cache slot and attending over the buffer, in a compiled loop of steps. Four forms: the two cache layouts
(keys ``[B, kvh, S, hd]`` / values ``[B, kvh, hd, S]`` before change 11, keys ``[B, kvh, hd, S]`` / values
``[B, kvh, S, hd]`` now) with the query's position axis apart (the einsums before change 11) or merged with its
heads (``layers._attend_heads_major``, now). Then the greedy pick over SmolLM2's vocabulary: ``jnp.argmax`` against
``sampling.first_argmax`` (experiments/README.md, change 11).

    python -m experiments.archive.decode_attention [--batches 1,8,32]
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.timing import median_time
from nabla_jax.generation.sampling import first_argmax
from nabla_jax.models.layers import _attend_heads_major, write_cache

LAYERS, KV_HEADS, GROUPS, HEAD_DIM, SLOTS, VOCAB = 30, 3, 3, 64, 97, 49152  # SmolLM2-135M, a 97-slot buffer
OLD, NEW = ("bksd", "bkds"), ("bkds", "bksd")  # the einsum forms of the keys' and the values' layouts


def attend_apart(q, k, v, mask, layout):
    """The attention of before change 11: the query's position axis t apart from its heads."""
    k_form, v_form = layout
    scores = jnp.einsum(f"btkgd,{k_form}->bkgts", q, k) * (HEAD_DIM**-0.5)
    scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    return jnp.einsum(f"bkgts,{v_form}->btkgd", jax.nn.softmax(scores, axis=-1), v)


def attend_merged_old_layout(q, k, v, mask):
    """The merged query (as ``layers._attend_heads_major``) over the cache layout of before change 11."""
    batch, length, kv_heads, groups, head_dim = q.shape
    queries = q.transpose(0, 2, 1, 3, 4).reshape(batch, kv_heads, length * groups, head_dim)
    scores = jnp.einsum("bkqd,bksd->bkqs", queries, k) * (head_dim**-0.5)
    scores = jnp.where(jnp.repeat(mask, groups, axis=1)[:, None], scores, jnp.finfo(jnp.float32).min)
    out = jnp.einsum("bkqs,bkds->bkqd", jax.nn.softmax(scores, axis=-1), v)
    return out.reshape(batch, kv_heads, length, groups, head_dim).transpose(0, 2, 1, 3, 4)


def attend(q, k, v, mask, layout, merged: bool):
    if not merged:
        return attend_apart(q, k, v, mask, layout)
    return _attend_heads_major(q, k, v, mask, q.dtype) if layout == NEW else attend_merged_old_layout(q, k, v, mask)


def step_fn(layout, merged: bool):
    """One decode step over the layers' caches: new keys/values from ``x``, written at ``slot``, then attention."""
    key_axis, value_axis = (2, 3) if layout == OLD else (3, 2)
    width = KV_HEADS * GROUPS * HEAD_DIM

    def step(slot, carry):
        x, caches = carry
        batch = x.shape[0]
        mask = jnp.broadcast_to(jnp.arange(SLOTS) <= slot, (batch, 1, SLOTS))
        new_caches = []
        for k_cache, v_cache in caches:
            q = x.reshape(batch, 1, KV_HEADS, GROUPS, HEAD_DIM)
            new = x[:, : KV_HEADS * HEAD_DIM].reshape(batch, KV_HEADS, HEAD_DIM)
            k_new = new[..., None] if layout == NEW else new[:, :, None, :]  # one slot in the key layout
            v_new = new[:, :, None, :] if layout == NEW else new[..., None]
            k_cache = write_cache(k_cache, k_new, slot, key_axis)
            v_cache = write_cache(v_cache, v_new, slot, value_axis)
            out = attend(q, k_cache, v_cache, mask, layout, merged)
            x = jnp.tanh(x + out.reshape(batch, width))
            new_caches.append((k_cache, v_cache))
        return x, tuple(new_caches)

    return step


def ms_per_step(layout, merged: bool, batch: int, steps: int = 16) -> float:
    rng = np.random.default_rng(0)
    k_shape = (batch, KV_HEADS, SLOTS, HEAD_DIM) if layout == OLD else (batch, KV_HEADS, HEAD_DIM, SLOTS)
    v_shape = k_shape[:2] + k_shape[2:][::-1]
    caches = tuple((jnp.asarray(rng.standard_normal(k_shape), jnp.float32),
                    jnp.asarray(rng.standard_normal(v_shape), jnp.float32)) for _ in range(LAYERS))
    x = jnp.asarray(rng.standard_normal((batch, KV_HEADS * GROUPS * HEAD_DIM)), jnp.float32)
    run = jax.jit(lambda x, c: jax.lax.fori_loop(SLOTS - steps, SLOTS, step_fn(layout, merged), (x, c))[0])
    run(x, caches).block_until_ready()
    return 1e3 * median_time(lambda: run(x, caches).block_until_ready(), 5) / steps


def ms_per_call(fn, x, repeats: int = 20) -> float:
    fn = jax.jit(fn)
    fn(x).block_until_ready()

    def calls():
        for _ in range(repeats):
            out = fn(x)
        out.block_until_ready()

    return 1e3 * median_time(calls, 5) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    batches = [int(b) for b in parser.parse_args().batches.split(",")]
    forms = [("before: keys [kvh, S, hd], values [kvh, hd, S], t apart", OLD, False),
             ("the layout alone: keys [kvh, hd, S], values [kvh, S, hd], t apart", NEW, False),
             ("merged queries alone, the old layout", OLD, True),
             ("now: keys [kvh, hd, S], values [kvh, S, hd], merged queries", NEW, True)]
    for batch in batches:
        print(f"batch {batch}: ms per step of 30 layers' cache writes and attention (load average "
              f"{os.getloadavg()[0]:.2f})")
        for name, layout, merged in forms:
            print(f"  {ms_per_step(layout, merged, batch):7.2f}  {name}")
        logits = jnp.asarray(np.random.default_rng(1).standard_normal((batch, VOCAB)), jnp.float32)
        assert (np.asarray(first_argmax(logits)) == np.asarray(jnp.argmax(logits, axis=-1))).all()
        before, now = ms_per_call(lambda x: jnp.argmax(x, axis=-1), logits), ms_per_call(first_argmax, logits)
        print(f"  greedy pick over {VOCAB} logits: jnp.argmax {before:.3f} ms, first_argmax {now:.3f} ms "
              f"({before / now:.1f}x)")


if __name__ == "__main__":
    main()
