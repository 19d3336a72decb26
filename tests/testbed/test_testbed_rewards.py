"""The testbed's rewards in the paper's shapes: the outcome model and the PRM wired from the verifier
(experiments/testbed/verifier_circuit.py) load by name with their stored reading options, score through the one
reward interface and agree with transformers; the circuit's widened trunk carries the verifier's own predictions;
bundled names resolve in the commands that name a model; the gradient-repair measurement keeps its invariants."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nabla_jax
from convert.hf import load_hf_params
from experiments.testbed import corrupt, encoding, gradient_repair, verifier_circuit
from nabla_jax.cli import main
from nabla_jax.dto import DTOConfig, dto_models
from nabla_jax.models import decoder
from nabla_jax.rewards import load_reward
from nabla_jax.rewards.loaders import STORED_OPTIONS_KEY
from nabla_jax.rewards.scoring import score_batch
from nabla_jax.templates import reward_input_template
from nabla_jax.testbed import MODELS_DIR, VERIFIER_DIR, task

OUTCOME_DIR = os.path.join(MODELS_DIR, "outcome")


def _reference_and_slip(count=12, seed=0):
    rng = np.random.default_rng(seed)
    problems = task.problems("test", count)
    return problems, [(task.format_solution(p), corrupt.corrupt_solution(p, rng, "slip")) for p in problems]


def test_the_circuit_carries_the_verifiers_digit_predictions_and_flags_a_planted_mistake():
    """Layer A's carried logits at position t are the verifier's own digit logits made at t - 1, and the badness
    is 0 along a reference solution and positive at a planted wrong digit."""
    lm_config, lm_params = load_hf_params(VERIFIER_DIR)
    config, params = verifier_circuit.circuit_params(lm_config, jax.device_get(lm_params))
    upto = lm_config.num_layers + 1  # the trunk and layer A
    params = jax.tree_util.tree_map(jnp.asarray, params)
    params["layers"] = jax.tree_util.tree_map(lambda x: x[:upto], params["layers"])
    params["final_norm"] = {"scale": jnp.ones(config.hidden_size)}  # read the residual's ratios
    p = task.problem("test", 3)
    wrong = corrupt.corrupt_solution(p, np.random.default_rng(0), "slip")
    rows = [encoding.reward_ids(task.format_prompt(p), text) for text in (task.format_solution(p), wrong)]
    ids, valid = encoding.pad_right(rows)
    positions = jnp.maximum(jnp.cumsum(jnp.asarray(valid), 1) - 1, 0)
    residual, _ = decoder.forward(config.replace(num_layers=upto), params, decoder.embed(params, jnp.asarray(ids)),
                                  positions, jnp.asarray(valid))
    residual = np.asarray(residual)
    scale = verifier_circuit.CONSTANT / residual[..., verifier_circuit.CONST:verifier_circuit.CONST + 1]
    hidden, _ = decoder.forward(lm_config, lm_params, decoder.embed(lm_params, jnp.asarray(ids)), positions, jnp.asarray(valid))
    lm = np.asarray(decoder.lm_logits(lm_config, lm_params, hidden))
    digits = [encoding.text_ids(c)[0] for c in verifier_circuit.DIGITS]
    carried = (residual * scale)[:, 1:, [verifier_circuit.LOGIT[c] for c in verifier_circuit.DIGITS]]
    expected = lm[:, :-1, digits]
    mask = valid[:, 1:]
    assert np.abs(carried - expected)[mask].max() < 0.05 * np.abs(expected[mask]).max()
    bad = (residual * scale)[..., verifier_circuit.BAD]
    start = len(encoding.prompt_ids(task.format_prompt(p)))
    assert np.abs(bad[0, start:len(rows[0])]).max() < 0.5  # a reference solution: nothing the verifier doubts
    first = next(i for i, (a, b) in enumerate(zip(task.format_solution(p), wrong)) if a != b)
    assert bad[1, start + first] > 1.0  # the planted wrong digit


def test_shipped_outcome_model_files_and_shape():
    names = set(os.listdir(OUTCOME_DIR))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json"} <= names
    assert sum(os.path.getsize(os.path.join(OUTCOME_DIR, n)) for n in names) < 2_000_000
    with open(os.path.join(OUTCOME_DIR, "config.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    assert raw["architectures"] == ["Qwen2ForSequenceClassification"] and raw["num_labels"] == 1
    assert raw["pad_token_id"] == 0 and raw["vocab_size"] == len(encoding.tokenizer())


def test_shipped_outcome_model_scores_match_transformers_and_rank_references_first():
    import torch
    from transformers import AutoModelForSequenceClassification

    reward = nabla_jax.load_reward("testbed:outcome")
    assert reward.kind.name == "outcome" and set(reward.params) == {"embed", "layers", "final_norm", "score"}
    problems, pairs = _reference_and_slip()
    rows = [encoding.reward_ids(task.format_prompt(p), text) for p, pair in zip(problems, pairs) for text in pair]
    ids, mask = encoding.pad_right(rows)
    ours = np.asarray(reward.score(ids, mask))
    model = AutoModelForSequenceClassification.from_pretrained(OUTCOME_DIR, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(ids, dtype=torch.long),
                       attention_mask=torch.tensor(mask, dtype=torch.long)).logits[:, 0].numpy()
    assert np.abs(ours - theirs).max() <= 1e-3 * max(1.0, np.abs(theirs).max())
    reference, slipped = ours.reshape(-1, 2).T
    assert (reference > slipped).mean() >= 0.9  # a random or mis-read head ranks at chance
    # the one reward interface (what best-of-N and the ∇-Reasoner call) gives the same scores
    outcome = load_reward("testbed:outcome")
    interface_rows = []
    for p, pair in zip(problems, pairs):
        prefix, postfix = reward_input_template(outcome, task.format_prompt(p))
        interface_rows += [(prefix, encoding.text_ids(text) + [encoding.EOS_ID], postfix) for text in pair]
    # the wired gains (up to 1e6) make float32 rounding visible at the 0.1% level between batch shapes
    assert np.allclose(score_batch(outcome, interface_rows, pad=0), ours, rtol=1e-2, atol=1e-2)


def test_the_prm_is_read_with_its_stored_options_and_flags_override_them():
    prm = load_reward("testbed:prm")
    assert prm.kind.name == "process" and prm.kind.separator_id is None and prm.kind.aggregate == "min"
    assert prm.kind.step_end_ids == tuple(encoding.text_ids("\n"))
    assert load_reward("testbed:prm", aggregate="last").kind.aggregate == "last"
    with pytest.raises(ValueError, match="not in the PRM's vocabulary"):
        load_reward("testbed:prm", separator="<extra_0>")  # given: replaces the stored none


def test_the_verifiers_stored_clip_is_its_default():
    assert load_reward("likelihood:testbed:verifier").kind.clip == -6.0
    assert load_reward("likelihood:testbed:verifier", clip=None).kind.clip is None
    assert load_reward("likelihood:testbed:verifier", clip=-3.0).kind.clip == -3.0


def test_an_unknown_stored_option_is_refused_by_name(tmp_path):
    copy = tmp_path / "prm"
    shutil.copytree(os.path.join(MODELS_DIR, "prm"), copy)
    raw = json.loads((copy / "config.json").read_text())
    raw[STORED_OPTIONS_KEY]["sepparator"] = None
    (copy / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="sepparator"):
        load_reward(str(copy))


def test_bundled_names_work_in_every_command_that_names_a_model(tmp_path, capsys):
    assert main(["convert", "testbed:outcome", str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert nabla_jax.load_reward(str(tmp_path / "hf")).config.hidden_size == verifier_circuit.HIDDEN
    assert main(["generate", "--policy", "testbed:policy", "--prompt", "what is 12+34?", "--max-new-tokens", "4",
                 "--temperature", "0"]) == 0
    out = str(tmp_path / "eval")
    assert main(["eval", "--benchmark", "testbed", "--limit", "1", "--max-new-tokens", "8", "--no-progress",
                 "--method", "bon@2", "--policy", "testbed:policy", "--reward", "testbed:prm", "--out", out]) == 0
    with open(os.path.join(out, "fingerprint.json"), encoding="utf-8") as handle:
        methods = json.load(handle)["methods"]
    assert all(entry["reward"]["sha256"] for entry in methods.values())  # the name hashed as its directory
    capsys.readouterr()
    assert main(["run", "--policy", "testbed:policy", "--reward", "testbed:outcome", "--prompt", "what is 12+34?",
                 "--max-new-tokens", "12", "--max-n-generations", "2", "--batch-size", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["prompt"] == "what is 12+34?"
    capsys.readouterr()
    assert main(["generate", "--policy", "testbed:polcy", "--prompt", "1"]) == 2
    assert "testbed:policy" in capsys.readouterr().err  # the error lists the valid names


def test_gradient_repair_invariants():
    """One DTO call at each known wrong token: with a vanishing learning rate nothing moves; with the reward off
    the result does not depend on the reward model; a full run reports consistent counts."""
    policy = nabla_jax.load_policy("testbed:policy")
    sites = gradient_repair.find_sites(policy.config, policy.params, task.problems("val", 24, start=256))
    assert sites and all(s.wrong != s.right and s.right.isdigit() for s in sites)
    inputs = gradient_repair.dto_inputs(policy, sites)
    outcome, classifier = load_reward("testbed:outcome"), load_reward("testbed:reward")
    still = gradient_repair.measure(policy, outcome, sites, inputs, DTOConfig(max_iters=3, learning_rate=1e-9))
    assert still["start_is_wrong"] == still["sites"] and still["moved"] == 0 and still["repaired"] == 0
    off = DTOConfig(max_iters=5, learning_rate=0.3, reward_coeff=0.0)
    a = gradient_repair.measure(policy, outcome, sites, inputs, off, dto_models(policy, outcome))
    b = gradient_repair.measure(policy, classifier, sites, inputs, off, dto_models(policy, classifier))
    assert a["chosen"] == b["chosen"]
    full = gradient_repair.measure(policy, outcome, sites, inputs, DTOConfig(max_iters=5, learning_rate=0.3))
    assert 0 <= full["repaired"] <= full["moved"] <= full["sites"]
    lo, hi = full["repair_interval"]
    assert lo <= full["repair_rate"] <= hi


def test_the_reward_kinds_table_is_regenerated_from_the_committed_records():
    from experiments.testbed import reward_kinds

    with open(os.path.join(reward_kinds.RESULTS, "reward_kinds.md"), encoding="utf-8") as handle:
        assert reward_kinds.report() == handle.read()
