"""Generation on small random models: greedy parity with transformers, latent alignment, stopping rules,
batch invariance, determinism, bucketed compilation, input errors and the CLI.

Compilation is the cost here, so tests share shapes: every ``generate`` call uses prompts of the 33..64-token
bucket and N_NEW new tokens, and rollouts are compared through the same jitted functions."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from nabla_jax.cli import main as cli_main
from nabla_jax.generation import (
    FINISH_EOS,
    FINISH_LENGTH,
    FINISH_NAMES,
    FINISH_STOP,
    RolloutSpec,
    SamplingConfig,
    chat_prompt_ids,
    filtered_distribution,
    generate,
    rollout,
    rollout_batch,
    rollout_logits,
)
from nabla_jax.compile_count import compile_requests
from nabla_jax.generation.queue import batch_rollouts, queue_rollouts
from nabla_jax.generation.rollouts import rollout_rows as batch_native
from nabla_jax.loading import load_policy
from nabla_jax.models import decoder
from tests.support.hf_models import CAUSAL_SPECS

N_NEW = 24
PROMPTS = ["What is 2+2? Answer briefly.", "Name three colours."]  # 47 and 38 chat tokens: one bucket (64)
GREEDY = dict(max_new_tokens=N_NEW, temperature=0.0)
SAMPLING = SamplingConfig(0.9, 30, 0.95)
SEED = 5


@pytest.fixture(scope="module")
def llama(hf_checkpoint):
    directory, torch_model = hf_checkpoint("llama")
    return directory, load_policy(directory), torch_model


def hf_greedy(torch_model, prompt_ids, n):
    with torch.no_grad():
        out = torch_model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(prompt_ids) :].tolist()


@pytest.mark.parametrize("name", CAUSAL_SPECS)
def test_greedy_matches_transformers(hf_checkpoint, name):
    directory, torch_model = hf_checkpoint(name)
    results = generate(load_policy(directory), PROMPTS, **GREEDY)
    for result in results:
        assert result.token_ids == hf_greedy(torch_model, result.prompt_ids, N_NEW)
        assert result.finish_reason == ("eos" if result.token_ids[-1] == 2 else "length")


# --- rollouts: alignment, batch invariance, determinism ----------------------------------------------------


def sampled_spec(policy):
    """The spec ``generate`` builds for SAMPLING (so both share compilations)."""
    return RolloutSpec(N_NEW, SAMPLING, eos_ids=(2,), pad_id=0)


def row_keys(rows):
    """The keys ``generate`` derives: fold_in(key(seed), prompt index)."""
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(SEED), i))(jnp.asarray(rows, jnp.uint32))


@pytest.fixture(scope="module")
def sampled(llama):
    """Two prompts of different lengths in one 64-slot buffer, sampled as one batch."""
    _, policy, _ = llama
    ids = [chat_prompt_ids(policy.tokenizer, p) for p in PROMPTS]
    buffer = np.zeros((2, 64), np.int32)
    for row, prompt in enumerate(ids):
        buffer[row, : len(prompt)] = prompt
    lengths = np.asarray([len(p) for p in ids], np.int32)
    out = rollout_batch(policy.config, policy.params, sampled_spec(policy), buffer, lengths, row_keys([0, 1]))
    return ids, buffer, lengths, jax.device_get(out)


@functools.partial(jax.jit, static_argnums=0)
def full_hidden(config, params, ids, mask):
    """One no-cache forward over right-padded full sequences: the reference for the rollout's latents."""
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    hidden, _ = decoder.forward(config, params, decoder.embed(params, ids), positions, mask)
    return hidden, decoder.lm_logits(config, params, hidden)


def test_latents_and_logits_equal_a_fresh_forward(llama, sampled):
    _, policy, _ = llama
    ids, _, lengths, out = sampled
    mask = np.arange(out.sequence.shape[1])[None] < out.sequence_length[:, None]
    hidden, logits = full_hidden(policy.config, policy.params, out.sequence, mask)
    dist = jax.jit(filtered_distribution, static_argnums=1)
    for row in range(2):
        p, n = int(lengths[row]), int(out.length[row])
        assert n >= 1 and out.sequence_length[row] == p + n
        np.testing.assert_array_equal(out.sequence[row, :p], ids[row])
        np.testing.assert_array_equal(out.tokens[row, :n], out.sequence[row, p : p + n])
        # variable t is the state that produced token t: the full forward at position p - 1 + t
        np.testing.assert_allclose(out.latents[row, :n], hidden[row, p - 1 : p - 1 + n], atol=1e-4)
        ours = rollout_logits(policy.config, policy.params, jnp.asarray(out.latents[row, :n]))
        np.testing.assert_allclose(ours, logits[row, p - 1 : p - 1 + n], atol=1e-4)
        probs = np.asarray(dist(ours, SAMPLING))
        assert (probs[np.arange(n), out.tokens[row, :n]] > 0).all(), "a token outside its filtered distribution"
        # a finished row stops changing: padding after it
        assert (out.tokens[row, n:] == 0).all() and not np.asarray(out.latents[row, n:]).any()
        assert out.finish[row] == (FINISH_EOS if out.tokens[row, n - 1] == 2 else FINISH_LENGTH)


def test_batch_invariance_and_determinism(llama, sampled):
    _, policy, _ = llama
    _, buffer, lengths, out = sampled
    spec = sampled_spec(policy)
    # each row alone (a batch of 1) with its own key gives the same tokens and latents
    for row in range(2):
        alone = rollout_batch(
            policy.config, policy.params, spec, buffer[row : row + 1], lengths[row : row + 1], row_keys([row])
        )
        np.testing.assert_array_equal(alone.tokens[0], out.tokens[row])
        np.testing.assert_allclose(alone.latents[0], out.latents[row], atol=1e-5)
    # swapping the rows (other neighbour, other slot in the batch) changes nothing either
    swapped = rollout_batch(policy.config, policy.params, spec, buffer[::-1], lengths[::-1], row_keys([1, 0]))
    np.testing.assert_array_equal(swapped.tokens[::-1], out.tokens)
    # same keys: identical; other keys: different samples
    again = rollout_batch(policy.config, policy.params, spec, buffer, lengths, row_keys([0, 1]))
    np.testing.assert_array_equal(again.tokens, out.tokens)
    other = rollout_batch(policy.config, policy.params, spec, buffer, lengths, row_keys([7, 8]))
    assert not np.array_equal(other.tokens, out.tokens)
    # generate() derives the same keys from (seed, prompt index): its rows are these rollouts
    kw = dict(max_new_tokens=N_NEW, temperature=SAMPLING.temperature, top_k=SAMPLING.top_k, top_p=SAMPLING.top_p)
    results = generate(policy, PROMPTS, seed=SEED, **kw)
    for row, result in enumerate(results):
        assert result.token_ids == out.tokens[row, : out.length[row]].tolist()
    # ... and a prompt's result does not depend on the other prompts of the call, nor on the batch size
    assert generate(policy, ["Hi! Who are you, model?", PROMPTS[1]], seed=SEED, **kw)[1] == results[1]
    assert generate(policy, PROMPTS, seed=SEED, batch_size=1, **kw) == results
    assert generate(policy, PROMPTS, seed=SEED + 1, **kw) != results


# --- stopping: EOS, stop sequences, budget, response_start ----------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 2))
def rollout_rows(config, params, spec, prompts, prompt_lens, keys, budgets, response_starts):
    return jax.vmap(lambda *a: rollout(config, params, spec, *a))(prompts, prompt_lens, keys, budgets, response_starts)


def expected_end(prompt, stream, eos_ids, stops, budget, response_start):
    """Python reference: (length, finish) of a greedy stream under the stopping rules."""
    sequence = list(prompt)
    for t in range(min(budget, len(stream))):
        sequence.append(stream[t])
        if stream[t] in eos_ids:
            return t + 1, FINISH_EOS
        for stop in stops:
            start = len(sequence) - len(stop)
            if start >= response_start and tuple(sequence[start:]) == stop:
                return t + 1, FINISH_STOP
    return min(budget, len(stream)), FINISH_LENGTH


def test_stop_rules_match_a_reference(llama):
    _, policy, _ = llama
    greedy = generate(policy, PROMPTS, **GREEDY)[0]  # the same shapes as the parity test: no new compilation
    prompt, stream = greedy.prompt_ids, greedy.token_ids
    assert len(stream) >= 8, "the fixture's greedy output ends too early for this test"
    eos = (2, stream[6])
    stops = ((stream[3], stream[4]), (prompt[-1], stream[0]))  # the second spans the prompt/response boundary
    spec = RolloutSpec(N_NEW, SamplingConfig(0.0), eos_ids=eos, stop_sequences=stops, pad_id=0)
    p = len(prompt)
    cases = [(N_NEW, p), (2, p), (N_NEW, 0), (0, p)]  # (budget, response_start)
    buffer = np.zeros((len(cases), 64), np.int32)
    buffer[:, :p] = prompt
    out = rollout_rows(
        policy.config,
        policy.params,
        spec,
        buffer,
        np.full(len(cases), p, np.int32),
        row_keys(range(len(cases))),
        np.asarray([c[0] for c in cases], np.int32),
        np.asarray([c[1] for c in cases], np.int32),
    )
    for row, (budget, start) in enumerate(cases):
        length, finish = expected_end(prompt, stream, set(eos), stops, budget, start)
        assert (int(out.length[row]), int(out.finish[row])) == (length, finish), (row, FINISH_NAMES[finish])
        assert out.tokens[row, :length].tolist() == stream[:length]
        assert (np.asarray(out.tokens[row, length:]) == 0).all()
    assert int(out.finish[2]) == FINISH_STOP and int(out.length[2]) == 1  # boundary stop, response_start = 0
    assert int(out.length[3]) == 0  # a budget of 0 generates nothing
    # the batch-native loop (all rows in one loop, one shared cache slot per step) equals each row run alone
    together = jax.jit(batch_native, static_argnums=(0, 2))(
        policy.config, policy.params, spec, buffer, np.full(len(cases), p, np.int32), row_keys(range(len(cases))),
        np.asarray([c[0] for c in cases], np.int32), np.asarray([c[1] for c in cases], np.int32),
    )
    for field in ("tokens", "length", "finish", "sequence"):
        np.testing.assert_array_equal(getattr(together, field), getattr(out, field))


def test_queue_equals_batches_of_one(llama, sampled):
    """Continuous batching: 10 prompts through 8 row slots (the first fill at once, then rows refilled mid-loop in
    chunks of 2 at per-row steps, the queue padded to 16) give each prompt exactly the continuation it gets alone,
    with its own key; so do fixed batches."""
    _, policy, _ = llama
    ids, _, _, out = sampled
    # tokens the sampler draws early become end tokens, so the rows end at different steps
    ends = tuple(sorted({int(out.tokens[0, 4]), int(out.tokens[1, 9])} - {int(out.tokens[0, 0])}))
    spec = RolloutSpec(N_NEW, SAMPLING, eos_ids=ends, pad_id=0)
    prompts = [ids[0], ids[1], ids[0][:-3], ids[1] + ids[1][:5], ids[0][:40]]
    prompts += [p[:-1] for p in prompts]
    keys = row_keys(range(len(prompts)))
    queued = queue_rollouts(policy.config, policy.params, spec, prompts, keys, batch_size=8)
    assert batch_rollouts(policy.config, policy.params, spec, prompts, keys, batch_size=8) == queued
    lengths = set()
    for i, prompt in enumerate(prompts):
        buffer = np.zeros((1, 64), np.int32)
        buffer[0, : len(prompt)] = prompt
        alone = rollout_batch(policy.config, policy.params, spec, buffer, np.asarray([len(prompt)], np.int32), keys[i : i + 1])
        tokens = [int(t) for t in alone.tokens[0, : int(alone.length[0])]]
        assert queued[i] == (tokens, int(alone.finish[0])), i
        lengths.add(len(tokens))
    assert len(lengths) >= 3, lengths  # the rows really ended at different steps


# --- API: prompts, compilation, errors, CLI -----------------------------------------------------------------------


def test_chat_prompt_ids_follow_the_template(llama):
    _, policy, _ = llama
    tok = policy.tokenizer
    expected = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    assert chat_prompt_ids(tok, "hi") == expected
    with_system = chat_prompt_ids(tok, "hi", system="Be brief.")
    assert with_system == tok.encode("<|im_start|>system\nBe brief.<|im_end|>\n", add_special_tokens=False) + expected


def test_prompts_of_many_lengths_compile_per_bucket(llama):
    _, policy, _ = llama
    prompts = [[5 + (i % 90) for i in range(n)] for n in (33, 37, 41, 46, 52, 58, 61, 64, 3, 9, 17, 30)]
    before, queues_before = compile_requests(), compile_requests("rollout_queue")
    first = generate(policy, prompts, batch_size=2, **GREEDY)
    queues = compile_requests("rollout_queue") - queues_before
    assert queues <= 2, queues  # queues (bucket 64, 8 prompts, 2 rows) and (bucket 32, 4 prompts, 2 rows)
    compiled = compile_requests() - before
    assert generate(policy, prompts, batch_size=2, **GREEDY) == first
    assert compile_requests() - before == compiled  # no program at all is new the second time


@pytest.mark.parametrize(
    "prompts, kwargs, match",
    [
        (["x" * 110], {}, "too long"),
        ([[]], {}, "empty"),
        ([""], {}, "empty"),
        ([], {}, "no prompts"),
        ([[1, 2, 1000]], {}, "token id"),
        (PROMPTS, {"temperature": -0.5}, "temperature"),
        (PROMPTS, {"top_p": 0.0}, "top_p"),
        (PROMPTS, {"top_p": 1.01}, "top_p"),
        (PROMPTS, {"top_k": -3}, "top_k"),
        (PROMPTS, {"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_input_raises(llama, prompts, kwargs, match):
    _, policy, _ = llama
    with pytest.raises(ValueError, match=match):
        generate(policy, prompts, **{**GREEDY, **kwargs})


def test_cli_generate(llama, capsys):
    directory, policy, _ = llama
    args = ["generate", "--policy", directory, "--max-new-tokens", str(N_NEW), "--temperature", "0"]
    assert cli_main(args + ["--prompt", PROMPTS[0], "--prompt", PROMPTS[1]]) == 0
    printed = capsys.readouterr().out
    results = generate(policy, PROMPTS, **GREEDY)
    for result in results:
        assert result.text in printed
    assert cli_main(args + ["--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["token_ids"] for row in rows] == [r.token_ids for r in results]
    assert [row["prompt"] for row in rows] == PROMPTS
    assert cli_main(args + ["--prompt", "hi", "--top-p", "2"]) == 2
    assert "top_p" in capsys.readouterr().err
