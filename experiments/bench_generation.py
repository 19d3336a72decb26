"""Generation on SmolLM2-135M-Instruct (CPU): our jitted rollouts against transformers ``generate``.

Prints, from one run (the machine is shared, so only the side-by-side ratios mean anything):
* greedy tokens per second at batch 1 and batch 8, ours (warm, compiled beforehand) over transformers;
* the number of compilations over 20 prompts of different lengths (length buckets keep it small).

    python -m experiments.bench_generation [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402

from convert.hf import save_hf_params  # noqa: E402
from nabla_jax.compile_count import compile_requests
from nabla_jax.generation import bucket_length, chat_prompt_ids, generate  # noqa: E402
from nabla_jax.loading import SMOLLM2_NAME, load_policy  # noqa: E402

# 20 problems of different lengths (written for this benchmark)
PROBLEMS = [
    "What is 7 times 8?",
    "Explain step by step how to add 27 and 45.",
    "A train travels 60 km in 45 minutes. What is its speed in km per hour?",
    "List the prime numbers below 30 and explain how you found them, one by one.",
    "If a rectangle has a perimeter of 36 cm and one side of 10 cm, what is its area? Show your work.",
    "Solve for x: 3x + 7 = 22. Explain each step.",
    "What is the sum of the interior angles of a hexagon, and why?",
    "Tom has twice as many apples as Sara. Together they have 27 apples. How many apples does each have?",
    "Describe how to compute the greatest common divisor of 84 and 36 with the Euclidean algorithm, step by step.",
    "A shop sells pens at 3 dollars each and notebooks at 5 dollars each. Ana buys 4 pens and some notebooks "
    "and pays 37 dollars. How many notebooks did she buy?",
    "Convert 3/8 to a decimal.",
    "How many ways can 5 different books be arranged on a shelf, and why?",
    "The mean of five numbers is 12. Four of them are 10, 11, 13 and 15. What is the fifth number? "
    "Explain your reasoning carefully, checking the arithmetic at the end.",
    "What is the probability of rolling a total of 7 with two fair dice? List the favourable cases.",
    "Find the next number in the sequence 2, 6, 12, 20, 30, and explain the pattern.",
    "A cyclist rides uphill at 12 km/h and returns downhill on the same road at 24 km/h. What is the average "
    "speed for the whole trip? Many people answer 18 km/h; explain why that is wrong and give the right value.",
    "Simplify (x^2 - 9) / (x - 3).",
    "What is 15% of 240?",
    "A water tank fills in 6 hours with pipe A and in 3 hours with pipe B. Pipe C empties the full tank in 4 "
    "hours. If all three pipes are open from an empty tank, how long does the tank take to fill? Show every "
    "step of the computation and state the final answer clearly at the end.",
    "Write 2024 as a product of primes, showing each division you make along the way. Then check the product.",
]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def hf_generate(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int) -> tuple[int, float]:
    """Greedy transformers generate over a left-padded batch; returns (new tokens up to each row's EOS, seconds)."""
    width = max(len(ids) for ids in prompt_ids)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    with torch.no_grad():
        out, seconds = timed(
            lambda: model.generate(
                ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad
            )
        )
    eos = model.generation_config.eos_token_id
    eos = set(eos) if isinstance(eos, list) else {eos}
    tokens = 0
    for row in out[:, width:].tolist():
        for token in row:
            tokens += 1
            if token in eos:
                break
    return tokens, seconds


def ours_generate(policy, prompt_ids, max_new_tokens) -> tuple[int, float, float]:
    """(new tokens, seconds warm, seconds of the first call incl. compilation)."""
    kw = dict(max_new_tokens=max_new_tokens, temperature=0.0, batch_size=len(prompt_ids))
    _, first = timed(lambda: generate(policy, prompt_ids, **kw))
    results, seconds = timed(lambda: generate(policy, prompt_ids, **kw))
    return sum(len(r.token_ids) for r in results), seconds, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    n = args.max_new_tokens

    policy = load_policy(SMOLLM2_NAME)
    tokenizer = policy.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        save_hf_params(policy.config, policy.params, os.path.join(tmp, "hf"))
        model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(tmp, "hf"), dtype=torch.float32)
    model.eval()
    encoded = [chat_prompt_ids(tokenizer, p) for p in PROBLEMS]
    print(f"SmolLM2-135M-Instruct, float32, CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}); "
          f"greedy, max_new_tokens={n}")

    # batch 8: eight prompts of one length bucket, so that ours runs them as one vmapped batch
    by_bucket = {}
    for ids in encoded:
        by_bucket.setdefault(bucket_length(len(ids)), []).append(ids)
    batch8 = max(by_bucket.values(), key=len)[:8]
    assert len(batch8) == 8, "need 8 prompts in one bucket"
    for label, prompts in (("batch 1", [encoded[0]]), ("batch 8", batch8)):
        hf_generate(model, tokenizer, prompts, 4)  # warm-up
        hf_tokens, hf_seconds = hf_generate(model, tokenizer, prompts, n)
        our_tokens, our_seconds, first = ours_generate(policy, prompts, n)
        ours_rate, hf_rate = our_tokens / our_seconds, hf_tokens / hf_seconds
        print(
            f"{label}: ours {our_tokens} tokens in {our_seconds:.2f} s = {ours_rate:.1f} tok/s "
            f"(first call incl. compile {first:.1f} s); transformers {hf_tokens} tokens in {hf_seconds:.2f} s = "
            f"{hf_rate:.1f} tok/s; ratio ours/transformers = {ours_rate / hf_rate:.2f}"
        )

    lengths = sorted(len(ids) for ids in encoded)
    buckets = sorted({bucket_length(len(ids)) for ids in encoded})
    print(f"20 prompts, {len(set(lengths))} distinct lengths ({lengths[0]}..{lengths[-1]} tokens), buckets {buckets}")
    for label, batch_size in (("one prompt per call", 1), ("one call, batch_size 8", 8)):
        before = compile_requests("rollout_queue")
        if batch_size == 1:
            for ids in encoded:
                generate(policy, [ids], max_new_tokens=8, temperature=0.0, batch_size=1)
        else:
            generate(policy, encoded, max_new_tokens=8, temperature=0.0, batch_size=8)
        print(f"compilations of the generation queue, {label}, max_new_tokens=8: "
              f"{compile_requests('rollout_queue') - before}")


if __name__ == "__main__":
    main()
