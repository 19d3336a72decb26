"""Time a 256-token forward of SmolLM2-135M-Instruct: our jitted JAX decoder against transformers (PyTorch), both
float32 on this CPU, measured side by side in one run. Also counts compilations in the steady state.

    python -m experiments.bench_forward [--tokens 256] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from experiments.timing import median_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import jax
    import torch
    from transformers import AutoModelForCausalLM

    import nabla_jax
    from nabla_jax.compile_count import compilations
    from nabla_jax.loading import smollm2_gguf_path

    policy = nabla_jax.load_policy("smollm2-135m-instruct")
    path = smollm2_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()
    ids = np.random.RandomState(0).randint(0, policy.config.vocab_size, (args.batch, args.tokens))
    torch_ids = torch.tensor(ids)

    def ours():
        jax.block_until_ready(policy.logits(ids))

    def theirs():
        with torch.no_grad():
            reference(torch_ids)

    start = time.perf_counter()
    ours()  # compile
    compile_s = time.perf_counter() - start
    compiles_after_warmup = compilations()
    theirs()
    jax_s = median_time(ours, args.repeats)
    torch_s = median_time(theirs, args.repeats)
    compiles_steady = compilations()
    print(f"SmolLM2-135M forward, batch {args.batch} x {args.tokens} tokens, float32, {os.cpu_count()} CPU cores")
    print(f"{'':24}{'median s':>10}{'tokens/s':>12}")
    print(f"{'nabla-jax (jit)':24}{jax_s:10.4f}{args.batch * args.tokens / jax_s:12.0f}")
    print(f"{'transformers (torch)':24}{torch_s:10.4f}{args.batch * args.tokens / torch_s:12.0f}")
    print(f"speed ratio (torch time / jax time): {torch_s / jax_s:.2f}x")
    print(f"first call (compile + run): {compile_s:.2f} s")
    print(f"compilations: {compiles_after_warmup} after warm-up, {compiles_steady} after {2 * args.repeats} more calls")


if __name__ == "__main__":
    main()
