"""The reward kinds against torch: a process reward model (the Qwen2.5-Math-PRM layout) and a likelihood reward,
their values and their gradients through soft tokens; one reward input for best-of-N and the ∇-Reasoner; and the
errors for rewards DTO cannot use."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import save_file

import nabla_jax
from nabla_jax.char_tokenizer import build_char_tokenizer
from nabla_jax.dto import DTOConfig, dto_models, loss_and_onehot_grad, make_problem
from nabla_jax.dto.prefix_cache import build_prefix_cache, rm_ahead_reward
from nabla_jax.templates import reward_input_template
from nabla_jax.rewards import RewardKind, load_reward
from nabla_jax.rewards.inputs import prefix_input
from nabla_jax.rewards.loaders import likelihood_reward
from nabla_jax.rewards.readout import input_values
from nabla_jax.rewards.scoring import response_step_scores, score_batch
from tests.support.hf_models import BASE
from tests.support.nabla_reference import python_reward_input

TOL = 1e-4
SEPARATOR, SPLIT = "|", "\n"
TOKENIZER = build_char_tokenizer()
RESPONSES = ["12-3=9\n9-4=5\nso 5", "7+1=8\n8*2=16\n16", "abc"]


class TorchPRM(torch.nn.Module):
    """Qwen2.5-Math-PRM's layout: the Qwen2 trunk, then Linear(d, d), ReLU, Linear(d, 2)."""

    def __init__(self, config):
        super().__init__()
        self.model = transformers.Qwen2Model(config)
        d = config.hidden_size
        self.score = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, 2))

    def step_probs(self, **inputs):
        hidden = self.model(**inputs).last_hidden_state
        return torch.softmax(self.score(hidden), dim=-1)[..., 1]


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory):
    config = transformers.Qwen2Config(**BASE)
    torch.manual_seed(5)
    model = TorchPRM(config).eval()
    with torch.no_grad():  # biases large enough that the head is not near 0.5 everywhere
        for p in model.score.parameters():
            p.normal_(0.0, 0.3)
    directory = str(tmp_path_factory.mktemp("prm"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(directory, "model.safetensors"))
    raw = config.to_dict()
    raw["architectures"] = ["Qwen2ForProcessRewardModel"]
    with open(os.path.join(directory, "config.json"), "w") as handle:
        json.dump(raw, handle)
    TOKENIZER.save_pretrained(directory)
    return directory, model


def prm(prm_dir, aggregate="min", separator=SEPARATOR):
    return load_reward(prm_dir[0], aggregate=aggregate, separator=separator, step_split=SPLIT)


def encode(text):
    return TOKENIZER.encode(text, add_special_tokens=False) + [TOKENIZER.eos_token_id]


def rows_for(reward, prompt="what is 12-3-4?"):
    prefix, postfix = reward_input_template(reward, prompt)
    return [(prefix, encode(r), postfix) for r in RESPONSES]


def torch_batch(rows, left):
    """Right- or left-padded ids, mask and positions of full id rows."""
    total = max(len(r) for r in rows)
    ids = np.zeros((len(rows), total), np.int64)
    mask = np.zeros_like(ids, bool)
    for i, row in enumerate(rows):
        span = slice(total - len(row), total) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = row, True
    return ids, mask, np.maximum(np.cumsum(mask, axis=1) - 1, 0)


@pytest.mark.parametrize("left", [False, True])
def test_prm_step_probabilities_match_torch(prm_dir, left):
    reward = prm(prm_dir)
    built = [python_reward_input(reward.kind, *row, final=True) for row in rows_for(reward)]
    ids, mask, positions = torch_batch([b[0] for b in built], left)
    counted = np.zeros_like(mask)
    for i, (row, c) in enumerate(built):
        offset = ids.shape[1] - len(row) if left else 0
        counted[i, offset : offset + len(row)] = c
    with torch.no_grad():
        ref = prm_dir[1].step_probs(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)),
                                    position_ids=torch.tensor(positions)).numpy()
    ours = np.asarray(jax.vmap(lambda i, v: input_values(reward.kind, reward.config, reward.params, i, v))(
        jnp.asarray(ids, jnp.int32), jnp.asarray(mask)))
    assert counted.sum(1).min() >= 1 and counted.sum() >= 7  # multi-step responses: 3, 3 and 1 steps
    assert np.abs(ours - ref)[counted].max() <= TOL
    assert ref[counted].std() > 0.02  # the probabilities differ between steps, so the comparison means something


def test_prm_aggregates_through_the_batched_scorer(prm_dir):
    rows = rows_for(prm(prm_dir))
    expected = {}
    for r, row in enumerate(rows):
        ids, counted = python_reward_input(prm(prm_dir).kind, *row, final=True)
        with torch.no_grad():
            probs = prm_dir[1].step_probs(input_ids=torch.tensor([ids])).numpy()[0][np.asarray(counted)]
        assert np.allclose(response_step_scores(prm(prm_dir), *row), probs, atol=TOL)
        for name, value in {"min": probs.min(), "prod": probs.prod(), "mean": probs.mean(), "last": probs[-1]}.items():
            expected.setdefault(name, []).append(value)
    for aggregate, values in expected.items():
        assert np.abs(score_batch(prm(prm_dir, aggregate), rows, pad=0) - values).max() <= TOL
    assert len({round(v[0], 4) for v in expected.values()}) == 4  # the four aggregates differ here


def test_prm_at_step_end_tokens_reads_the_newlines(prm_dir):
    """Without a separator the PRM is read at each step's own last token (a newline) and the response's end."""
    reward = prm(prm_dir, separator=None)
    prefix, response, postfix = rows_for(reward)[0]
    ids = prefix + response + postfix
    newline = TOKENIZER.convert_tokens_to_ids(SPLIT)
    expected = [len(prefix) + i for i, t in enumerate(response) if t == newline] + [len(prefix) + len(response) - 1]
    with torch.no_grad():
        probs = prm_dir[1].step_probs(input_ids=torch.tensor([ids])).numpy()[0][expected]
    assert np.allclose(response_step_scores(reward, prefix, response, postfix), probs, atol=TOL)


def soft_reward_setup(hf_checkpoint, reward, committed_text, ahead_text):
    policy = nabla_jax.load_policy(hf_checkpoint("qwen2")[0])
    models = dto_models(policy, reward)
    prompt = "what is 12-3-4?"
    template, postfix = reward_input_template(reward, prompt)
    committed, ahead = encode(committed_text)[:-1], encode(ahead_text)
    rm_prefix, counted = prefix_input(models.reward_kind, template, committed)
    lm_prefix = [3, 4, 5] + committed
    problem = make_problem(lm_prefix, len(ahead), rm_prefix, postfix, (len(lm_prefix), len(rm_prefix) + 3, 8), counted)
    y = jax.nn.one_hot(jnp.asarray(ahead), policy.config.vocab_size, dtype=jnp.float32)
    return models, problem, y, (template, committed, ahead, postfix)


def torch_soft_inputs(embedding, template, committed, y, postfix, kind, final_sep=True):
    """The reward input as embeddings with the ahead tokens soft (``y @ E``), separators inserted by hand."""
    pieces = [embedding[torch.tensor(template + committed_with_separators(kind, committed))]]
    for i in range(y.shape[0]):
        pieces.append((y[i] @ embedding)[None])
        token = int(y[i].argmax())
        if kind.separator_id is not None and (token in kind.step_end_ids or (final_sep and i == y.shape[0] - 1)):
            pieces.append(embedding[torch.tensor([kind.separator_id])])
    if postfix:
        pieces.append(embedding[torch.tensor(postfix)])
    return torch.cat(pieces)[None]


def committed_with_separators(kind, committed):
    return python_reward_input(kind, [], committed, [], final=False)[0]


@pytest.mark.parametrize(("aggregate", "use_cache"), [("mean", True), ("prod", False)])
def test_prm_gradient_through_soft_tokens_matches_torch(hf_checkpoint, prm_dir, aggregate, use_cache):
    reward = prm(prm_dir, aggregate)
    models, problem, y, (template, committed, ahead, postfix) = soft_reward_setup(hf_checkpoint, reward, "12-3=9\n", "9-4=5\n5")
    cache = build_prefix_cache(models, problem, y.shape[0]) if use_cache else None
    value, grad = jax.value_and_grad(lambda v: rm_ahead_reward(models, problem, cache, v))(y)

    torch_prm = prm_dir[1]
    ty = torch.tensor(np.asarray(y), requires_grad=True)
    embeds = torch_soft_inputs(torch_prm.model.embed_tokens.weight, template, committed, ty, postfix, reward.kind)
    probs = torch_prm.step_probs(inputs_embeds=embeds)[0]
    ids, counted = python_reward_input(reward.kind, template, committed + ahead, postfix, final=True)
    chosen = probs[torch.tensor(np.flatnonzero(counted))]
    ref = chosen.mean() if aggregate == "mean" else chosen.prod()
    ref.backward()
    scale = max(1.0, float(ty.grad.abs().max()))
    assert abs(float(value) - float(ref.detach())) <= TOL
    assert float(ty.grad.abs().max()) > 1e-3
    assert np.abs(np.asarray(grad) - ty.grad.numpy()).max() <= TOL * scale


def torch_logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits, -1).numpy()
    return logp[np.arange(len(ids) - 1), ids[1:]]


@pytest.mark.parametrize("clip", [-4.4])  # the floor and the unfloored values in one run (no floor: the gradient test)
def test_likelihood_reward_matches_transformers(hf_checkpoint, clip):
    directory, model = hf_checkpoint("llama")
    reward = likelihood_reward(nabla_jax.load_policy(directory), clip)
    rows = rows_for(reward)
    scores = score_batch(reward, rows, pad=0)
    clipped = 0
    for (prefix, response, postfix), score in zip(rows, scores):
        assert postfix == []
        values = torch_logprobs(model, prefix + response)[len(prefix) - 1 :]
        clipped += int((values < clip).sum()) if clip is not None else 0
        values = np.maximum(values, clip) if clip is not None else values
        assert abs(score - values.mean()) <= TOL
        assert np.allclose(response_step_scores(reward, prefix, response, postfix), values, atol=TOL)
    assert clip is None or clipped > 0  # the floor was exercised


@pytest.mark.parametrize(("use_cache", "target_gradient"), [(True, True), (True, False)])  # re-forward: the PRM test
def test_likelihood_gradient_through_soft_tokens_matches_torch(hf_checkpoint, use_cache, target_gradient):
    """Without ``target_gradient`` the soft tokens are constants as targets (torch: ``detach``) and the gradient
    reaches them only through the context; the value is the same."""
    directory, model = hf_checkpoint("llama")
    reward = likelihood_reward(nabla_jax.load_policy(directory), clip=None, target_gradient=target_gradient)
    models, problem, y, (template, committed, ahead, postfix) = soft_reward_setup(hf_checkpoint, reward, "12-3=9\n", "9-4=5")
    cache = build_prefix_cache(models, problem, y.shape[0]) if use_cache else None
    value, grad = jax.value_and_grad(lambda v: rm_ahead_reward(models, problem, cache, v))(y)

    ty = torch.tensor(np.asarray(y), requires_grad=True)
    embedding = model.model.embed_tokens.weight
    embeds = torch.cat([embedding[torch.tensor(template + committed)], ty @ embedding])[None]
    logp = torch.log_softmax(model(inputs_embeds=embeds).logits[0], -1)
    start = len(template)
    committed_part = logp[torch.arange(start - 1, start - 1 + len(committed)), torch.tensor(committed)]
    as_targets = ty if target_gradient else ty.detach()
    ahead_part = (as_targets * logp[start - 1 + len(committed) : start - 1 + len(committed) + len(ahead)]).sum(-1)
    ref = torch.cat([committed_part, ahead_part]).mean()
    ref.backward()
    scale = max(1.0, float(ty.grad.abs().max()))
    assert abs(float(value) - float(ref.detach())) <= TOL
    assert float(ty.grad.abs().max()) > 1e-3
    assert np.abs(np.asarray(grad) - ty.grad.numpy()).max() <= TOL * scale


def test_prm_separator_missing_from_the_vocabulary_is_refused(prm_dir):
    with pytest.raises(ValueError, match="separator token '<extra_0>' is not in the PRM's vocabulary"):
        load_reward(prm_dir[0])  # the Qwen default separator: the char vocabulary has no such token


def test_reward_kind_dto_cannot_differentiate_is_refused(hf_checkpoint, prm_dir):
    policy = nabla_jax.load_policy(hf_checkpoint("llama")[0])
    classifier = nabla_jax.load_reward(hf_checkpoint("llama_cls")[0])
    with pytest.raises(ValueError, match="cannot be read from a LlamaForSequenceClassification"):
        dto_models(policy, classifier.__class__(classifier.config, classifier.params, classifier.tokenizer,
                                                 kind=RewardKind("process", separator_id=5)))
    with pytest.raises(ValueError, match="likelihood reward needs a causal LM"):
        dto_models(policy, classifier.__class__(classifier.config, classifier.params, classifier.tokenizer,
                                                 kind=RewardKind("likelihood")))
    assert nabla_jax.load_reward is load_reward  # one loader for every kind: a PRM is read as a process reward
    with pytest.raises(ValueError, match="scores a response, not a bare sequence"):
        prm(prm_dir).score([[3, 4, 5]])


def test_mismatched_vocabularies_are_refused(hf_checkpoint, tmp_path):
    policy = nabla_jax.load_policy(hf_checkpoint("llama")[0])
    import tokenizers

    words = {"<pad>": 0} | {f"word{i}": i for i in range(1, 101)}  # no token in common with the char vocabulary
    other = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(tokenizers.models.WordLevel(words, unk_token="<pad>")), pad_token="<pad>")
    assert other.pad_token_id == 0
    reward = likelihood_reward(policy, None)
    reward = reward.__class__(reward.config, reward.params, other, reward.source, reward.template, kind=reward.kind)
    with pytest.raises(ValueError, match="share only"):
        dto_models(policy, reward)


@pytest.mark.parametrize("kind", ["outcome", "process", "likelihood"])
def test_best_of_n_and_the_reasoner_score_a_response_alike(hf_checkpoint, prm_dir, tmp_path, kind):
    """One reward input for both: best-of-N's batched scorer and the ∇-Reasoner's acceptance test give the same
    number for the same response (final EOS included)."""
    from nabla_jax.evaluation.accounting import Cost
    from nabla_jax.evaluation.context import Candidate, DecodeSettings, EvalContext
    from nabla_jax.evaluation.datasets import load_benchmark
    from nabla_jax.reasoner import NablaConfig, NablaReasoner
    from nabla_jax.reasoner.problem import make_nabla_problem, response_reward

    policy = nabla_jax.load_policy(hf_checkpoint("llama")[0])
    reward = {
        "outcome": lambda: nabla_jax.load_reward(hf_checkpoint("llama_cls")[0]),
        "process": lambda: prm(prm_dir, "mean"),
        "likelihood": lambda: likelihood_reward(nabla_jax.load_policy(hf_checkpoint("qwen2")[0]), -5.0),
    }[kind]()
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"id": "p0", "problem": "what is 12-3-4?", "answer": "5"}) + "\n")
    bench = load_benchmark(str(path))
    ctx = EvalContext(policy, reward, bench, DecodeSettings(max_new_tokens=24))
    responses = [encode(r) for r in RESPONSES] + [encode("9\n")[:-1]]  # the last one ran out of length: no EOS
    candidates = [Candidate(ids, "", None, "eos", Cost()) for ids in responses]
    ctx.score(bench.problems, 0, [candidates])

    reasoner = NablaReasoner(policy, reward, NablaConfig(max_new_tokens=24))
    (prompt_ids, prefix, postfix), = reasoner.encode([bench.problems[0].problem])
    problem = make_nabla_problem(prompt_ids, prefix, postfix, (64 + 24, 64, 8), jax.random.key(0))
    for ids, candidate in zip(responses, candidates):
        sequence = jnp.asarray(np.pad(prompt_ids + ids, (0, 64 + 24 - len(prompt_ids) - len(ids))), jnp.int32)
        inside = float(response_reward(reasoner.models, problem, sequence, len(ids), reasoner.rm_pad, 24))
        assert abs(candidate.reward - inside) <= 1e-5
    assert len({round(c.reward, 5) for c in candidates}) == len(candidates)  # the responses score differently


def reward_of_kind(hf_checkpoint, prm_dir, kind):
    """A test reward model of each kind; the PRM ends a step at every third id, so committed and ahead steps both
    occur in random text."""
    if kind == "process":
        loaded = prm(prm_dir)
        steps = RewardKind("process", "min", tuple(range(3, 101, 3)), loaded.kind.separator_id)
        return loaded.__class__(loaded.config, loaded.params, loaded.tokenizer, loaded.source, kind=steps)
    if kind == "likelihood":
        return likelihood_reward(nabla_jax.load_policy(hf_checkpoint("qwen2")[0]), -6.0)
    return nabla_jax.load_reward(hf_checkpoint("llama_cls")[0])


@pytest.mark.parametrize("kind", ["outcome", "process", "likelihood"])
def test_extending_a_prefix_cache_equals_building_it(hf_checkpoint, prm_dir, kind):
    """The ∇-Reasoner carries its prefix cache across iterations: a reward side built for 3 committed tokens and
    extended by 7 more (two windows of 4) equals one built for all 10. The reward prefix of a response that goes on
    only grows (a separator PRM's separators among the new slots). (The policy's side comes from the rollouts:
    test_kv_cache.py::test_a_rollouts_keys_and_values_by_position_equal_a_pass_over_its_sequence.)"""
    from nabla_jax.dto.prefix_cache import extend_reward_prefix
    from nabla_jax.reasoner import NablaConfig, NablaReasoner

    reasoner = NablaReasoner(nabla_jax.load_policy(hf_checkpoint("llama")[0]),
                             reward_of_kind(hf_checkpoint, prm_dir, kind), NablaConfig(max_new_tokens=8))
    models, ahead = reasoner.models, 8
    (prompt, rm_prefix, rm_postfix), = reasoner.encode(["what is 12-3-4?"])
    committed = [int(t) for t in np.random.default_rng(0).integers(4, 40, 10)]

    def problem(count):
        rm_ids = [int(models.reward_index[t]) for t in committed[:count]]
        ids, counted = python_reward_input(models.reward_kind, rm_prefix, rm_ids, [], False)
        return make_problem(prompt + committed[:count], ahead, ids, rm_postfix, (64, 96, 8), counted), ids

    (short, old_ids), (long, new_ids) = problem(3), problem(10)
    rm_from = next((i for i, (a, b) in enumerate(zip(old_ids, new_ids)) if a != b), len(old_ids))
    assert rm_from == len(old_ids)
    if kind == "process":
        assert models.reward_kind.separator_id in new_ids[rm_from:]
    built = build_prefix_cache(models, long, ahead)
    extended = jax.jit(extend_reward_prefix, static_argnums=4)(
        models, long, build_prefix_cache(models, short, ahead), rm_from, 4)
    rm_len = len(new_ids)
    np.testing.assert_allclose(extended.rm_kv.k[:, :, :rm_len], built.rm_kv.k[:, :, :rm_len], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(extended.rm_kv.v[:, :, :rm_len], built.rm_kv.v[:, :, :rm_len], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(extended.rm_last_hidden, built.rm_last_hidden, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(extended.rm_slot_values[:rm_len], built.rm_slot_values[:rm_len], rtol=1e-5, atol=1e-5)
    for got, want in zip(extended.rm_prefix_share, built.rm_prefix_share, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert float(built.rm_prefix_share.count) > 0 or kind == "outcome"  # the share reads real slots

    # a pass over the first 4 of the 8 ahead slots (3 real ones), on the cache cut to them, equals the whole pass
    # (a separator PRM's reward chunk is cut to twice the slots)
    three = long._replace(ahead_len=jnp.asarray(3, jnp.int32))
    y = jax.nn.one_hot(jnp.asarray([6, 7, 9, 11, 5, 8, 13, 4]), models.vocab_size, dtype=jnp.float32)
    passes = jax.jit(loss_and_onehot_grad, static_argnums=(1, 5))
    whole, narrow = (passes(models, DTOConfig(), three, built, y, size) for size in (None, 4))
    np.testing.assert_allclose(narrow[0], whole[0], rtol=1e-5, atol=1e-6)
    scale = float(jnp.abs(whole[2]).max())
    assert scale > 0 and float(jnp.abs(narrow[2] - whole[2]).max()) <= 1e-5 * scale
    assert narrow[2].shape == whole[2].shape and not np.asarray(narrow[2][4:]).any()


@pytest.mark.parametrize("kind", ["process", "likelihood"])
def test_jitted_reasoner_with_other_reward_kinds_equals_the_eager_reference(hf_checkpoint, prm_dir, kind):
    from nabla_jax.reasoner import NablaConfig, NablaReasoner
    from tests.reasoner.test_nabla import PROMPTS, SMALL, assert_matches_reference

    policy = nabla_jax.load_policy(hf_checkpoint("llama")[0])
    reward = reward_of_kind(hf_checkpoint, prm_dir, kind)
    # the likelihood case decodes 16 tokens, so the selector's passes and DTO's full steps run over 8 or 16 slots
    longer = {"max_new_tokens": 16, "grad_threshold": 2.0} if kind == "likelihood" else {}
    reasoner = NablaReasoner(policy, reward, NablaConfig.from_settings(**{**SMALL, "grad_threshold": None, **longer}))
    total = assert_matches_reference(reasoner, reasoner.generate(PROMPTS, seed=3, batch_size=4))
    assert total["proposals"] > total["rejections"] > 0 and total["dto_runs"] > 0


def test_the_mixture_control_equals_the_eager_reference(hf_checkpoint, prm_dir):
    """mix@N: the ∇-Reasoner's loop with DTO replaced by sampling from log pi + beta * log p_verifier; at beta = 0
    it is the loop without DTO (blind resampling), token for token."""
    from nabla_jax.reasoner import NablaConfig, NablaReasoner
    from tests.reasoner.test_nabla import PROMPTS, SMALL, assert_matches_reference

    policy = nabla_jax.load_policy(hf_checkpoint("llama")[0])
    reward = reward_of_kind(hf_checkpoint, prm_dir, "likelihood")
    settings = {**SMALL, "grad_threshold": None, "max_new_tokens": 16, "use_dto": False}
    mixed = NablaReasoner(policy, reward, NablaConfig.from_settings(**settings, mix_beta=2.0))
    total = assert_matches_reference(mixed, mixed.generate(PROMPTS, seed=3, batch_size=4))
    assert total["verifier_passes"] > 0 and total["proposals"] > 0
    zero = NablaReasoner(policy, reward, NablaConfig.from_settings(**settings, mix_beta=0.0))
    blind = NablaReasoner(policy, reward, NablaConfig.from_settings(**settings))
    assert [r.token_ids for r in zero.generate(PROMPTS, seed=3, batch_size=4)] == \
        [r.token_ids for r in blind.generate(PROMPTS, seed=3, batch_size=4)]


def test_the_mixture_control_needs_a_likelihood_reward(hf_checkpoint, prm_dir):
    from nabla_jax.reasoner import NablaConfig, NablaReasoner

    policy = nabla_jax.load_policy(hf_checkpoint("llama")[0])
    with pytest.raises(ValueError, match="needs a likelihood reward"):
        NablaReasoner(policy, reward_of_kind(hf_checkpoint, prm_dir, "outcome"), NablaConfig(use_dto=False, mix_beta=1.0))
    with pytest.raises(ValueError, match="set use_dto=False"):
        NablaConfig(mix_beta=1.0)


def test_a_context_only_gradient_is_refused_for_rewards_that_read_no_targets(hf_checkpoint, prm_dir):
    """Only a likelihood reward reads the response's tokens as targets; the others refuse the option by name,
    before loading anything."""
    for spec in (f"judge:{hf_checkpoint('llama')[0]}", prm_dir[0], hf_checkpoint("llama_cls")[0]):
        with pytest.raises(ValueError, match="target_gradient applies to a likelihood reward"):
            load_reward(spec, target_gradient=False)
    with pytest.raises(ValueError, match="target_gradient applies to a likelihood reward only, not to a process"):
        RewardKind("process", separator_id=5, target_gradient=False)
