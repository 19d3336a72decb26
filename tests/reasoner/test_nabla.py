"""The jitted, batched ∇-Reasoner against the eager reference, and each mechanism in isolation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nabla_jax
from nabla_jax.reasoner import NablaConfig, NablaReasoner
from nabla_jax.reasoner.phases import commit, first_selected
from nabla_jax.reasoner.state import NablaState, empty_events, empty_stats
from tests.support.nabla_reference import reference_decode

PROMPTS = ["12+7=?", "what is 3*4", "Compute 5-2 step by step", "x"]
SMALL = dict(
    max_new_tokens=8, max_n_generations=4, max_iters=3, rollout_top_k=0, resample_top_k=0,
    confidence_threshold=0.95, grad_threshold=2.0,
)
COMPARED = ["rollouts", "proposals", "rejections", "acceptance_tests", "generated_tokens", "dto_runs",
            "dto_full_steps", "dto_cached_steps", "selector_passes", "skipped_tokens", "budget_tokens", "iterations",
            "verifier_passes"]


@pytest.fixture(scope="module")
def models(hf_checkpoint):
    policy_dir, _ = hf_checkpoint("llama")
    reward_dir, _ = hf_checkpoint("llama_cls")
    return nabla_jax.load_policy(policy_dir), nabla_jax.load_reward(reward_dir)


@pytest.fixture(scope="module")
def reasoner(models):
    return NablaReasoner(*models, NablaConfig.from_settings(**SMALL))


@pytest.fixture(scope="module")
def batched(reasoner):
    return reasoner.generate(PROMPTS, seed=3, batch_size=4)


def assert_matches_reference(reasoner, batched, seed: int = 3, prompts=PROMPTS) -> dict:
    """Each problem of ``batched`` (``prompts`` at ``seed``) equals the eager reference; returns the summed stats."""
    base = jax.random.key(seed)
    for i, prompt in enumerate(prompts):
        tokens, stats = reference_decode(reasoner, prompt, jax.random.fold_in(base, i))
        assert batched[i].token_ids == tokens, f"problem {i}"
        assert {k: batched[i].stats[k] for k in COMPARED} == stats, f"problem {i}"
    return {k: sum(r.stats[k] for r in batched) for k in COMPARED}


def test_batched_decoder_matches_eager_reference(reasoner, batched):
    total = assert_matches_reference(reasoner, batched)  # and the run exercised every mechanism at least once
    assert total["proposals"] > 0 and total["rejections"] > 0 and total["skipped_tokens"] > 0
    assert total["dto_cached_steps"] > 0 and total["selector_passes"] > 0
    assert total["proposals"] > total["rejections"]  # some revisions were accepted


def test_batch_of_one_equals_batch_of_four(reasoner, batched):
    for i in (1, 3):
        alone = reasoner.generate([PROMPTS[i]], seed=3, batch_size=1, problem_ids=[i])[0]
        assert alone.token_ids == batched[i].token_ids
        assert {k: alone.stats[k] for k in COMPARED} == {k: batched[i].stats[k] for k in COMPARED}


def test_a_queue_with_fewer_rows_than_problems_gives_the_same_records(reasoner, batched):
    from nabla_jax.compile_count import compile_requests

    queued = reasoner.generate(PROMPTS, seed=3, batch_size=2)  # 4 problems through 2 row slots: rows are refilled
    for one, other in zip(queued, batched, strict=True):
        assert one.token_ids == other.token_ids
        assert {k: one.stats[k] for k in COMPARED} == {k: other.stats[k] for k in COMPARED}
        assert one.revisions == other.revisions
    before = compile_requests()  # the same queues in another order: no program is new, the same records
    again = reasoner.generate(PROMPTS[::-1], seed=3, batch_size=2, problem_ids=[3, 2, 1, 0])
    assert compile_requests() == before
    assert [r.token_ids for r in again[::-1]] == [r.token_ids for r in batched]
    encoded = reasoner.encode(PROMPTS[:3])  # a queue of 3 is padded to 8 entries (never decoded), a fixed batch to 4
    assert reasoner.stack_problems(encoded, [0, 1, 2], jax.random.key(3)).prompt_len.shape == (8,)
    assert reasoner.stack_problems(encoded, [0, 1, 2], jax.random.key(3), queue=False).prompt_len.shape == (4,)


def test_reusing_the_selector_gradient_saves_model_passes_and_changes_nothing(models, batched):
    """A DTO run that starts where the gradient selector ran takes its dL/dy as the first full step; recomputing it
    (``reuse_probe_gradient=False``, as the official code does) gives the same records at more model passes."""
    recomputed = NablaReasoner(*models, NablaConfig.from_settings(**SMALL, reuse_probe_gradient=False)).generate(
        PROMPTS, seed=3, batch_size=4
    )
    for one, other in zip(batched, recomputed, strict=True):
        assert one.token_ids == other.token_ids
        assert {k: one.stats[k] for k in COMPARED} == {k: other.stats[k] for k in COMPARED}
        assert one.revisions == other.revisions
    executed = [sum(r.stats["dto_executed_steps"] for r in run) for run in (batched, recomputed)]
    assert executed[0] < executed[1]
    assert sum(r.stats["flops"] for r in batched) < sum(r.stats["flops"] for r in recomputed)


def test_carrying_the_prefix_cache_runs_fewer_tokens_and_changes_nothing(models, batched):
    """The prefix cache extended by the committed tokens (``carry_prefix``, the default) against rebuilt whole at
    every selector pass and DTO call, as the official code re-runs it: the same records, less model work."""
    rebuilt = NablaReasoner(*models, NablaConfig.from_settings(**SMALL, carry_prefix=False)).generate(PROMPTS, seed=3, batch_size=4)
    for one, other in zip(batched, rebuilt, strict=True):
        assert one.token_ids == other.token_ids
        assert {k: one.stats[k] for k in COMPARED} == {k: other.stats[k] for k in COMPARED}
        assert one.revisions == other.revisions
    assert sum(r.stats["flops"] for r in batched) < sum(r.stats["flops"] for r in rebuilt)


def test_statistics_are_consistent(batched):
    for r in batched:
        s = r.stats
        assert s["rollouts"] == 1 + s["proposals"] <= SMALL["max_n_generations"]
        assert s["dto_runs"] <= s["iterations"]
        assert s["dto_full_steps"] + s["dto_cached_steps"] == SMALL["max_iters"] * s["dto_runs"]
        assert s["model_calls_official"] == s["generated_tokens"] + 4 * s["dto_full_steps"] + 2 * s["acceptance_tests"]
        assert s["model_calls_full"] > s["model_calls_official"]
        assert s["flops"] > 0
        assert len(r.token_ids) <= SMALL["max_new_tokens"]
        assert len(r.revisions) == s["proposals"]
        assert sum(not v.accepted for v in r.revisions) == s["rejections"]


def _state(ahead_len, n=6, d=3):
    latents = jnp.arange(n * d, dtype=jnp.float32).reshape(n, d)
    return NablaState(jnp.arange(20), jnp.int32(5), jnp.int32(ahead_len), latents, jnp.bool_(False),
                      empty_stats(), empty_events(2, n))


def test_selection_commits_exactly_the_skipped_prefix():
    cfg = NablaConfig(confidence_threshold=0.9, grad_threshold=None)
    confident = jnp.array([10.0, 0.0, 0.0])  # top probability ~1
    unsure = jnp.array([0.1, 0.0, 0.0])
    logits = jnp.stack([confident, confident, unsure, confident, unsure, unsure])
    assert int(first_selected(cfg, logits, None, 5)) == 2
    assert int(first_selected(cfg, logits, None, 2)) == 2  # nothing selected within the rollout: commit it all
    assert int(first_selected(cfg.replace(selection=False), logits, None, 5)) == 0
    grad_cfg = NablaConfig(confidence_threshold=None, grad_threshold=1.0)
    assert int(first_selected(grad_cfg, logits, jnp.array([0.5, 2.0, 0.1, 3.0, 0.0, 0.0]), 5)) == 1
    state = commit(_state(5), 2)
    assert (int(state.past_len), int(state.ahead_len)) == (7, 3)
    np.testing.assert_array_equal(np.asarray(state.latents[:3]), np.asarray(_state(5).latents[2:5]))


def test_one_revision_then_budget(models):
    """max_n_generations=2 allows exactly one proposal; afterwards the rest of the rollout is committed. A rejected
    proposal leaves the old rollout with its first token committed; an accepted one replaces it."""
    cfg = NablaConfig.from_settings(**{**SMALL, "max_n_generations": 2, "confidence_threshold": None, "grad_threshold": None})
    results = NablaReasoner(*models, cfg).generate(PROMPTS * 2, seed=0, batch_size=8)
    seen = set()
    for r in results:
        assert r.stats["rollouts"] <= 2
        if not r.revisions:
            continue
        (rev,) = r.revisions
        prefix = r.token_ids[: rev.position]
        if rev.accepted:
            assert r.token_ids == prefix + rev.proposed and rev.reward_proposed > rev.reward_current
        else:
            assert r.token_ids == prefix + rev.current and rev.reward_proposed <= rev.reward_current
            assert r.stats["budget_tokens"] == len(rev.current) - 1
        seen.add(rev.accepted)
    assert seen == {True, False}, "both outcomes should occur over these eight problems"


def test_rejection_sampling_off_accepts_every_change(models):
    cfg = NablaConfig.from_settings(**{**SMALL, "rejection_sampling": False})
    results = NablaReasoner(*models, cfg).generate(PROMPTS, seed=3, batch_size=4)
    assert sum(r.stats["proposals"] for r in results) > 0
    for r in results:
        assert r.stats["rejections"] == 0 and r.stats["acceptance_tests"] == 0
        assert all(v.accepted for v in r.revisions)


def preferring_reward(reward, token_id: int, strength: float = 40.0):
    """A reward whose score grows with the share of ``token_id`` in the sequence: layer 0's attention averages the
    embeddings' first coordinate over the sequence (zero queries: uniform weights), every other contribution is
    zeroed, only ``token_id`` has a nonzero first coordinate, and the score head reads that coordinate."""
    p = jax.tree.map(lambda x: x, reward.params)
    layers = p["layers"]
    zero = lambda a: jnp.zeros_like(a)
    attn, mlp = dict(layers["attn"]), dict(layers["mlp"])
    attn["q_proj"] = {"kernel": zero(attn["q_proj"]["kernel"])}
    v = zero(attn["v_proj"]["kernel"]).at[0, 0, 0].set(1.0)
    o = zero(attn["o_proj"]["kernel"]).at[0, 0, 0].set(1.0)
    attn["v_proj"], attn["o_proj"] = {"kernel": v}, {"kernel": o}
    mlp["down_proj"] = {"kernel": zero(mlp["down_proj"]["kernel"])}
    p["layers"] = {**layers, "attn": attn, "mlp": mlp}
    embed = p["embed"]["embedding"]
    embed = embed.at[:, 0].set(0.0).at[token_id, 0].set(3.0)
    p["embed"] = {"embedding": embed}
    p["score"] = {"kernel": zero(p["score"]["kernel"]).at[0, 0].set(strength)}
    return type(reward)(reward.config, p, reward.tokenizer, "preferring")


def test_reward_that_prefers_a_token_moves_the_output(models):
    policy, reward = models
    target = policy.tokenizer.convert_tokens_to_ids("7")
    prefer = preferring_reward(reward, target)
    ids = lambda text: policy.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, return_dict=False)
    with_seven = np.asarray(ids("7777") + [target] * 4)
    without = np.asarray(ids("7777") + [5] * 4)
    assert float(prefer.score(with_seven)[0]) > float(prefer.score(without)[0])
    greedy = nabla_jax.generate(policy, PROMPTS, max_new_tokens=8, temperature=0.0)
    cfg = NablaConfig.from_settings(**{**SMALL, "learning_rate": 1.0, "confidence_threshold": None, "grad_threshold": None,
                         "max_n_generations": 6, "resample_temperature": 0.0})
    guided = NablaReasoner(policy, prefer, cfg).generate(PROMPTS, seed=0, batch_size=4)
    greedy_count = sum(r.token_ids.count(target) for r in greedy)
    guided_count = sum(r.token_ids.count(target) for r in guided)
    assert greedy_count == 0
    assert guided_count >= len(PROMPTS)  # on average at least one preferred token per problem


@pytest.mark.parametrize(
    "change, message",
    [
        ({"max_n_generations": 0}, "max_n_generations"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"embedder": "hidden"}, "embedder"),
        ({"update_positions": "some"}, "update_positions"),
        ({"rollout_top_p": 0.0}, "top_p"),
        ({"resample_temperature": -1.0}, "temperature"),
        ({"use_dto": "yes"}, "use_dto"),
        ({"reuse_probe_gradient": 1}, "reuse_probe_gradient"),
        ({"carry_prefix": "on"}, "carry_prefix"),
    ],
)
def test_invalid_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        NablaConfig.from_settings(**change)


def test_evaluation_methods_record_what_the_decoder_returns(models, reasoner, tmp_path):
    """``nabla@N`` in ``nabla-jax eval`` runs the same decoder with the same per-problem keys."""
    import json

    from nabla_jax.evaluation.context import DecodeSettings
    from nabla_jax.evaluation.runner import run_eval

    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": f"q{i}", "problem": p, "answer": "1"}) + "\n" for i, p in enumerate(PROMPTS[:3])))
    nabla = {k: v for k, v in SMALL.items() if k not in ("max_new_tokens", "max_n_generations", "rollout_top_k")}
    settings = DecodeSettings(SMALL["max_new_tokens"], 0.6, 0, 0.95)
    out = tmp_path / "runs"
    run_eval(str(bench), "nabla,nabla_no_dto", *models, out=str(out), seeds=(5,), ns=(SMALL["max_n_generations"],),
             settings=settings, batch_size=4, options={"nabla": NablaConfig.from_settings(**nabla)}, progress=False)
    records = {(r["method"], r["problem_index"]): r for r in map(json.loads, open(out / "records.jsonl"))}
    direct = reasoner.generate(PROMPTS[:3], seed=5, batch_size=4)  # same config and shapes: no new compilation
    for i in range(3):
        record = records[("nabla@4", i)]
        assert record["text"] == direct[i].text
        assert record["official_calls"] == direct[i].stats["model_calls_official"]
        assert record["stats"]["rejections"] == direct[i].stats["rejections"]
        blind = records[("nabla_no_dto@4", i)]["stats"]
        assert blind["dto_runs"] == 0 and blind["dto_full_steps"] == 0 and blind["rollouts"] >= 1


def test_compacted_phases_run_only_the_chunks_that_need_them():
    from nabla_jax.rows import when_any_rows

    x = jnp.arange(8.0)
    mask = jnp.asarray([False, True, False, False, True, False, False, False])
    double = lambda v, w: (2 * v, v + w)  # noqa: E731  (row by row)
    out, other = jax.jit(lambda m, v: when_any_rows(m, double, 2, v, v))(mask, x)
    np.testing.assert_array_equal(np.asarray(out)[[1, 4]], [2.0, 8.0])  # the rows that need it, in place
    np.testing.assert_array_equal(np.asarray(other)[[1, 4]], [2.0, 8.0])
    # rows 1 and 4 are gathered into the first chunk; the other three chunks hold no such row and do not run
    assert np.count_nonzero(np.asarray(out)) == 2
    none, _ = jax.jit(lambda m, v: when_any_rows(m, double, 2, v, v))(jnp.zeros(8, bool), x + 1)
    assert not np.asarray(none).any()
    with pytest.raises(ValueError, match="do not split"):
        when_any_rows(mask[:6], double, 4, x[:6], x[:6])


def test_a_pass_runs_at_the_smallest_size_that_fits_the_rows_that_need_it():
    from nabla_jax.dto.prefix_cache import ahead_sizes
    from nabla_jax.rows import when_any_fits

    assert ahead_sizes(32) == (8, 16, 24, 32) and ahead_sizes(1024) == (256, 512, 768, 1024)
    assert ahead_sizes(16) == (8, 16) and ahead_sizes(8) == (8,) and ahead_sizes(3) == (3,)
    assert ahead_sizes(20) == (8, 16, 20) and ahead_sizes(33) == (9, 18, 27, 33)  # the whole buffer is always one
    size_of = jax.jit(lambda mask, need: when_any_fits(mask, need, (4, 8, 16), lambda size, n: jnp.full(2, size), need))
    need = jnp.asarray([3, 12, 5])
    assert np.asarray(size_of(jnp.asarray([True, False, True]), need)).tolist() == [8, 8]  # row 1 does not need it
    assert np.asarray(size_of(jnp.asarray([True, True, False]), need)).tolist() == [16, 16]
    assert np.asarray(size_of(jnp.asarray([True, False, False]), need)).tolist() == [4, 4]
    assert np.asarray(size_of(jnp.zeros(3, bool), need)).tolist() == [0, 0]  # nothing runs


def test_the_carried_prefix_cache_equals_one_built_whole_at_every_iteration(reasoner):
    """With ``carry_prefix`` the policy's side of the prefix cache is the rollouts' own keys/values (replaced when a
    proposal is accepted), the logits of its last token are the first ahead token's, and the reward side is
    extended by the committed tokens: after each iteration, refreshing the carried cache gives what one pass of
    both models over the whole prefix gives, for every row still decoding."""
    from nabla_jax.reasoner import phases
    from nabla_jax.reasoner.loop import make_kernel, nabla_init, nabla_step, refresh_prefix

    cfg, spec, rm_pad = reasoner.config, reasoner.spec(), reasoner.rm_pad
    problems = reasoner.stack_problems(reasoner.encode(PROMPTS), list(range(len(PROMPTS))), jax.random.key(3), queue=False)
    kernel = lambda models: make_kernel(models, cfg, spec, rm_pad, len(PROMPTS))  # noqa: E731
    start = jax.jit(lambda m, p: nabla_init(kernel(m), p))
    step = jax.jit(lambda m, p, s: nabla_step(kernel(m), p, s))

    @jax.jit
    def carried_and_rebuilt(models, problems, state):
        logits = jax.vmap(phases.ahead_logits, in_axes=(None, 0))(models, state)
        carried = refresh_prefix(kernel(models), problems, state, ~state.done, logits).prefix
        rebuilt = jax.vmap(lambda p, s: phases.prefix_cache(models, p, s, rm_pad))(problems, state)
        rm_len = jax.vmap(lambda p, s: phases.dto_problem(models, p, s, rm_pad).rm_prefix_len)(problems, state)
        return carried, rebuilt, rm_len

    models, state, checked = reasoner.models, start(reasoner.models, problems), 0
    while not bool(jnp.all(state.done)):
        carried, rebuilt, rm_len = carried_and_rebuilt(models, problems, state)
        for row in np.flatnonzero(~np.asarray(state.done)):
            past, rm = int(state.past_len[row]), int(rm_len[row])
            for got, want, n in ((carried.lm_kv, rebuilt.lm_kv, past), (carried.rm_kv, rebuilt.rm_kv, rm)):
                for a, b in zip(got, want, strict=True):
                    np.testing.assert_allclose(a[row, :, :, :n], b[row, :, :, :n], rtol=1e-4, atol=1e-4)
            for field in ("lm_last_logits", "rm_last_hidden"):
                np.testing.assert_allclose(getattr(carried, field)[row], getattr(rebuilt, field)[row], rtol=1e-4,
                                           atol=1e-4)
            for a, b in zip(carried.rm_prefix_share, rebuilt.rm_prefix_share, strict=True):
                np.testing.assert_allclose(a[row], b[row], rtol=1e-4, atol=1e-4)
            checked += 1
        state = step(models, problems, state)
    accepted = np.asarray(state.stats.proposals - state.stats.rejections)
    assert checked > len(PROMPTS) and accepted.sum() > 0  # rows were checked after accepted proposals too
