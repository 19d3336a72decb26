"""Training of the testbed process reward model (PRM): per-step correctness read at each line's end.

A testbed response is one step per line and a final ``#### N`` line. The PRM is read where the library's process
reward reads it with ``--reward-separator none --reward-step-split "\\n"``: at every newline of the response (the
step that line ends) and at the response's last token (its end-of-turn token: the final step). Its label at a step
is exact, from :attr:`task.Problem.partial_results`: 1 iff that step and every step before it are the reference's
steps (the first wrong step and everything after it are 0; the ``#### N`` line is a step, and the last step is 1 only
for a complete, correct solution). So read as an outcome model (aggregate ``last``) it is a process-correctness
classifier, and aggregated by ``min`` it is a process reward.

The model:

1. the backbone of the testbed's likelihood verifier (a stronger LM that already knows the arithmetic), kept
   frozen (``frozen_layers``), plus ``extra_layers`` new layers (the Qwen2 layout: q/k/v biases). The first new
   layer's attention starts as a previous-token attention (zero q/k kernels, biases whose rotary score peaks one
   position back), so a token can be checked against what the verifier predicted for it; the second's attends
   evenly to everything so far (to carry a flag raised at an earlier step); both are trained from there;
2. the Qwen2.5-Math-PRM head: Linear(d, d), ReLU, Linear(d, 2), the probability of label 1 at each step;
3. trained with binary cross-entropy on the labelled steps of, per problem, the reference solution, fresh
   corruptions shaped like the policy's mistakes (:mod:`corrupt`) and the policy's own samples (drawn once, at
   temperature 1, into a pool), the same candidates :mod:`train_reward` uses;
4. plus two auxiliary terms at the other response tokens, which teach the check the step labels need (with the step
   labels alone the head stayed at chance within problems for hundreds of steps): ``dense_weight`` times the same
   head's cross-entropy against whether the response so far is a prefix of the reference's text (a label on the
   very digit where a mistake is made, kept 0 from there on), and ``carried_weight`` times an auxiliary LM head's
   cross-entropy against the reference's token at each position up to the first mistake (the position must know
   what belongs there, which the verifier predicted one position back; the head is dropped at export).

Reward inputs are built as the library builds them (:mod:`nabla_jax.rewards.inputs`): the reward template's prefix,
the response, its end-of-turn token, the template's postfix; a test checks the ids and the read slots against it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from nabla_jax.models import decoder
from nabla_jax.models.config import PROCESS_REWARD, DecoderConfig
from nabla_jax.rewards import readout
from nabla_jax.testbed import corrupt, encoding, evaluation, task, training
from nabla_jax.testbed.train_reward import CORRUPTION_MIX, POLICY_POOL_END

NEWLINE = "\n"
_STEP_RE = re.compile(r"\s*(\d+)\s*([+-])\s*(\d+)\s*=\s*(-?\d+)\s*")
_ANSWER_RE = re.compile(r"\s*####\s*(-?\d+)\s*")
AGGREGATES = ("min", "last", "prod", "mean")


@dataclasses.dataclass(frozen=True)
class PRMTrainingConfig:
    seed: int = 0
    steps: int = 1500
    groups_per_batch: int = 4
    learning_rate: float = 3e-3
    warmup: int = 100
    extra_layers: int = 3
    problems: int = 2000
    samples: int = 4
    temperature: float = 1.0
    data_start: int = POLICY_POOL_END
    eval_every: int = 250
    eval_problems: int = 256
    eval_samples: int = 8
    dense_weight: float = 1.0
    carried_weight: float = 0.5
    frozen_layers: int = 3  # the first layers (and the embedding, when > 0) kept as the verifier's


# ---------------------------------------------------------------- exact step labels


def _line_is_step(p: task.Problem, k: int, line: str) -> bool:
    """Whether ``line`` is the reference's k-th line of ``p`` (compared by value: the k-th step's operation on the
    true running value, or the ``#### answer`` line after the last step)."""
    if k < len(p.ops):
        match = _STEP_RE.fullmatch(line)
        before = p.operands[0] if k == 0 else p.partial_results[k - 1]
        expected = (before, p.ops[k], p.operands[k + 1], p.partial_results[k])
        return bool(match) and (int(match[1]), match[2], int(match[3]), int(match[4])) == expected
    if k == len(p.ops):
        match = _ANSWER_RE.fullmatch(line)
        return bool(match) and int(match[1]) == p.answer
    return False


def step_labels(p: task.Problem, response: str) -> list[int]:
    """One label per step of ``response``, in order: a step per newline (the line it ends) and the final step at the
    response's end (the text after the last newline). A step is 1 iff it and every step before it are the
    reference's; the final step is 1 only when the whole response is the complete correct solution (a trailing
    newline or blank is ignored there)."""
    lines = response.split(NEWLINE)
    labels, good = [], True
    for k, line in enumerate(lines[:-1]):  # the lines a newline ends
        good = good and _line_is_step(p, k, line)
        labels.append(int(good))
    body = response.rstrip().split(NEWLINE)
    complete = len(body) == len(p.ops) + 1 and all(_line_is_step(p, k, line) for k, line in enumerate(body))
    return labels + [int(complete)]


def process_correct(p: task.Problem, response: str) -> bool:
    """The whole response is the reference solution step for step (the last step's label)."""
    return bool(step_labels(p, response)[-1])


# ---------------------------------------------------------------- reward inputs


def reward_template(prompt: str) -> tuple[list[int], list[int]]:
    """(prefix, postfix) ids of the reward template around a response (the chat template with the assistant turn)."""
    head, middle, tail = encoding._template_pieces()
    return [*head, *encoding.text_ids(prompt), *middle], list(tail)


def prm_input(prompt: str, response: str, eos: bool = True) -> tuple[list[int], list[bool]]:
    """``(ids, read)`` of a response's reward input as the library builds it for a PRM read at step-end tokens:
    prefix + response (+ its end-of-turn token, kept as the official rule keeps it) + postfix; ``read`` marks the
    response's newlines and its last token."""
    prefix, postfix = reward_template(prompt)
    body = encoding.text_ids(response) + ([encoding.EOS_ID] if eos else [])
    newline = encoding.text_ids(NEWLINE)[0]
    read = [False] * len(prefix) + [t == newline or i == len(body) - 1 for i, t in enumerate(body)] + [False] * len(postfix)
    return prefix + body + postfix, read


class PRMBatch(NamedTuple):
    ids: np.ndarray  # [N, T] reward ids, right-padded
    valid: np.ndarray  # [N, T]
    read: np.ndarray  # [N, T] the step slots
    label: np.ndarray  # [N, T] float32 step labels at the read slots, prefix labels at the other response tokens
    dense: np.ndarray  # [N, T] the other response tokens (the dense term's slots)
    target: np.ndarray  # [N, T] int32 the reference's token at each response position up to the first mistake
    carry: np.ndarray  # [N, T] the positions with a target (the carried term's slots)


def prefix_labels(p: task.Problem, response: str) -> list[int]:
    """Per character of ``response``: whether the response up to and including it is a prefix of the reference
    solution's text (the dense auxiliary labels)."""
    reference = task.format_solution(p)
    same = 0
    while same < min(len(reference), len(response)) and reference[same] == response[same]:
        same += 1
    return [int(i < same) for i in range(len(response))]


def encode_candidates(problems, candidates: list[list[str]], length: int = encoding.REWARD_LENGTH) -> PRMBatch:
    """Every problem's candidate responses with their exact step labels, as one padded batch (problem-major)."""
    rows, reads, labels, denses, targets = [], [], [], [], []
    for p, texts in zip(problems, candidates):
        prompt = task.format_prompt(p)
        start = len(reward_template(prompt)[0])
        reference = encoding.text_ids(task.format_solution(p)) + [encoding.EOS_ID]
        for text in texts:
            ids, read = prm_input(prompt, text)
            steps = step_labels(p, text)
            if sum(read) != len(steps):
                raise AssertionError(f"{len(steps)} labels for {sum(read)} read slots in {text!r}")
            row_label, dense, it = [0.0] * len(ids), [False] * len(ids), iter(steps)
            for i, good in enumerate(prefix_labels(p, text)):
                row_label[start + i], dense[start + i] = float(good), not read[start + i]
            for i, r in enumerate(read):
                if r:
                    row_label[i] = float(next(it))
            same = sum(prefix_labels(p, text))  # the first mistake's offset (or the response's length)
            rows.append(ids)
            reads.append(read)
            labels.append(row_label)
            denses.append(dense)
            targets.append((start, reference[: min(same + 1, len(reference), len(ids) - start)]))
    ids, valid = encoding.pad_right(rows, max(length, max(len(r) for r in rows)))
    read, dense, carry = (np.zeros(ids.shape, bool) for _ in range(3))
    label, target = np.zeros(ids.shape, np.float32), np.zeros(ids.shape, np.int32)
    for i, (r, lab, d, (start, ref)) in enumerate(zip(reads, labels, denses, targets)):
        read[i, : len(r)], label[i, : len(lab)], dense[i, : len(d)] = r, lab, d
        target[i, start : start + len(ref)], carry[i, start : start + len(ref)] = ref, True
    return PRMBatch(ids, valid, read, label, dense, target, carry)


def training_candidates(problems, responses: list[list[str]], rng: np.random.Generator) -> list[list[str]]:
    """Reference + fresh corruptions + the pooled policy samples per problem (as :mod:`train_reward`)."""
    return [
        [task.format_solution(p)] + [corrupt.corrupt_solution(p, rng, kind) for kind in CORRUPTION_MIX] + list(sampled)
        for p, sampled in zip(problems, responses)
    ]


# ---------------------------------------------------------------- model


PREVIOUS_TOKEN_WEIGHTS = (100.0, 40.0, 40.0)  # squared q/k bias norms on the three fastest rotary pairs


def prm_config(verifier: DecoderConfig, extra_layers: int = 0) -> DecoderConfig:
    """The verifier's architecture plus ``extra_layers`` as a process reward model in the Qwen2.5-Math-PRM layout
    (Qwen2ForProcessRewardModel: the same trunk with q/k/v biases, which the extra layers' attention uses)."""
    return verifier.replace(family="qwen2", qkv_bias=True, o_bias=False, kind=PROCESS_REWARD, num_labels=2,
                            num_layers=verifier.num_layers + extra_layers)


def previous_token_biases(config: DecoderConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(q_bias [heads * head_dim], k_bias [kv_heads * head_dim])`` that, with zero q/k kernels, make every head
    attend to the previous position: on rotary pair i the score is ``w_i cos(θ_i (Δ - 1))`` for a key Δ positions
    back, largest at Δ = 1 (over 99% of the attention for Δ up to 95 with these weights)."""
    from nabla_jax.models.rope import inverse_frequencies

    inv, half = np.asarray(inverse_frequencies(config)), config.head_dim // 2
    q, k = np.zeros(config.head_dim, np.float32), np.zeros(config.head_dim, np.float32)
    for i, w in enumerate(PREVIOUS_TOKEN_WEIGHTS):
        q[i] = np.sqrt(w)
        k[i], k[i + half] = np.sqrt(w) * np.cos(inv[i]), np.sqrt(w) * np.sin(inv[i])
    return np.tile(q, config.num_heads), np.tile(k, config.num_kv_heads)


def prm_params_from_lm(lm_config: DecoderConfig, lm_params: dict, key: jax.Array, extra_layers: int = 0) -> dict:
    """A causal LM's backbone (copied, with zero q/k/v biases: the same function), then ``extra_layers`` new layers
    that start as the identity except for their attention: the first attends to the previous position (zero q/k
    kernels, :func:`previous_token_biases`; the check of a token against what was predicted one position back),
    the second evenly to every position so far (zero q/k: the pooling of flags raised earlier), the rest as usual;
    then a fresh two-layer process head whose output starts at zero (every step scored 0.5), and the auxiliary LM
    head of the carried term (``aux``, the LM's own output matrix; dropped by :func:`export_prm_params`)."""
    config = prm_config(lm_config, extra_layers)
    head_key, layers_key = jax.random.split(key)
    params = jax.tree_util.tree_map(jnp.copy, {k: v for k, v in lm_params.items() if k != "lm_head"})
    for name in ("q_proj", "k_proj", "v_proj"):
        width = params["layers"]["attn"][name]["kernel"].shape[-1]
        params["layers"]["attn"][name]["bias"] = jnp.zeros((lm_config.num_layers, width), jnp.float32)
    if extra_layers:
        fresh = decoder.init_params(config.replace(num_layers=extra_layers), layers_key)["layers"]
        attn = fresh["attn"]
        fresh["mlp"]["down_proj"]["kernel"] = jnp.zeros_like(fresh["mlp"]["down_proj"]["kernel"])
        q_bias, k_bias = previous_token_biases(config)
        for name in ("q_proj", "k_proj"):
            attn[name]["kernel"] = attn[name]["kernel"].at[:2].set(0.0)
        attn["q_proj"]["bias"] = attn["q_proj"]["bias"].at[0].set(q_bias)
        attn["k_proj"]["bias"] = attn["k_proj"]["bias"].at[0].set(k_bias)
        attn["o_proj"]["kernel"] = attn["o_proj"]["kernel"].at[2:].set(0.0)
        params["layers"] = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), params["layers"], fresh)
    d = params["final_norm"]["scale"].shape[0]
    params["score"] = {
        "hidden": {"kernel": jax.random.normal(head_key, (d, d), jnp.float32) / np.sqrt(d), "bias": jnp.zeros((d,), jnp.float32)},
        "out": {"kernel": jnp.zeros((d, 2), jnp.float32), "bias": jnp.zeros((2,), jnp.float32)},
    }
    params["aux"] = {"lm": jnp.copy(decoder.output_matrix(lm_config, lm_params))}
    return params


def export_prm_params(params: dict) -> dict:
    """The PRM's own weights (the auxiliary LM head removed)."""
    return {k: v for k, v in params.items() if k != "aux"}


def step_logits(params: dict, hidden):
    """``[N, T]`` the head's log-odds of label 1 at every slot (the same head :func:`readout.process_probs` reads)."""
    head = params["score"]
    h = jax.nn.relu(jnp.dot(hidden, head["hidden"]["kernel"], preferred_element_type=jnp.float32) + head["hidden"]["bias"])
    logits = jnp.dot(h, head["out"]["kernel"]) + head["out"]["bias"]
    return logits[..., 1] - logits[..., 0]


def prm_loss(params, config: DecoderConfig, batch: PRMBatch, weights: tuple[float, float] = (1.0, 0.5), frozen: int = 0):
    """Binary cross-entropy over the labelled steps plus the dense and carried terms (``weights``, module doc);
    also returns the step term and the per-step accuracy at 0.5. The embedding and the first ``frozen`` layers get
    no gradient."""
    dense_weight, carried_weight = weights
    if frozen:
        stop = jax.lax.stop_gradient
        layers = jax.tree_util.tree_map(lambda x: jnp.concatenate([stop(x[:frozen]), x[frozen:]]), params["layers"])
        params = {**params, "embed": stop(params["embed"]), "layers": layers}
    hidden = training._hidden(config, params, batch.ids, batch.valid)
    z = step_logits(params, hidden)
    y = batch.label
    nll = -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))

    def mean(mask):
        weights = mask.astype(jnp.float32)
        return jnp.sum(nll * weights) / jnp.maximum(weights.sum(), 1.0)

    steps = mean(batch.read)
    read = batch.read.astype(jnp.float32)
    accuracy = jnp.sum(((z > 0) == (y > 0.5)) * read) / jnp.maximum(read.sum(), 1.0)
    carried_logp = jax.nn.log_softmax(jnp.dot(hidden, params["aux"]["lm"], preferred_element_type=jnp.float32), axis=-1)
    carried = -jnp.take_along_axis(carried_logp, batch.target[..., None], axis=-1)[..., 0]
    carry = batch.carry.astype(jnp.float32)
    carried = jnp.sum(carried * carry) / jnp.maximum(carry.sum(), 1.0)
    return steps + dense_weight * mean(batch.dense) + carried_weight * carried, (steps, accuracy)


def make_optimizer(cfg: PRMTrainingConfig, params: dict):
    """AdamW on the trained params; the embedding and the first ``frozen_layers`` layers are left exactly as they
    are (no updates, no weight decay)."""
    train = training.make_optimizer(cfg.learning_rate, cfg.steps, cfg.warmup)
    if not cfg.frozen_layers:
        return train
    labels = {k: jax.tree_util.tree_map(lambda _: "frozen" if k == "embed" else "train", v) for k, v in params.items()}
    mask = lambda x: jnp.arange(x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1)) >= cfg.frozen_layers  # noqa: E731
    layer_update = optax.chain(train, optax.stateless(lambda updates, _: jax.tree_util.tree_map(lambda u: u * mask(u), updates)))
    labels["layers"] = jax.tree_util.tree_map(lambda _: "layers", params["layers"])
    return optax.multi_transform({"train": train, "layers": layer_update, "frozen": optax.set_to_zero()}, labels)


@functools.partial(jax.jit, static_argnames=("config", "optimizer", "weights", "frozen"), donate_argnums=(0, 1))
def prm_step(params, opt_state, config: DecoderConfig, optimizer, batch: PRMBatch, weights: tuple[float, float] = (1.0, 0.5),
             frozen: int = 0):
    (_, (loss, accuracy)), grads = jax.value_and_grad(prm_loss, has_aux=True)(params, config, batch, weights, frozen)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, accuracy


@functools.partial(jax.jit, static_argnames=("config",))
def step_probs(config: DecoderConfig, params, ids, valid):
    """``[N, T]`` P(label 1) at every slot, through the library's readout."""
    return readout.process_probs(config, params, training._hidden(config, params, ids, valid))


# ---------------------------------------------------------------- evaluation


def aggregate(values: np.ndarray, how: str) -> float:
    """One response's reward from its step probabilities (as :func:`readout.finish`)."""
    if how == "min":
        return float(values.min())
    if how == "last":
        return float(values[-1])
    if how == "prod":
        return float(np.prod(values))
    return float(values.mean())


def score_steps(config, params, problems, responses: list[list[str]], batch_size: int = 512) -> list[list[np.ndarray]]:
    """Each response's step probabilities (problem-major), padded batches of one shape."""
    batch = encode_candidates(problems, responses)
    probs = []
    for start in range(0, len(batch.ids), batch_size):
        ids, valid = batch.ids[start : start + batch_size], batch.valid[start : start + batch_size]
        n = len(ids)
        if n < batch_size and len(batch.ids) > batch_size:
            ids = np.concatenate([ids, np.repeat(ids[-1:], batch_size - n, 0)])
            valid = np.concatenate([valid, np.repeat(valid[-1:], batch_size - n, 0)])
        probs.append(np.asarray(step_probs(config, params, jnp.asarray(ids), jnp.asarray(valid)))[:n])
    probs = np.concatenate(probs)
    flat = [probs[i][batch.read[i]] for i in range(len(probs))]
    k = len(responses[0])
    return [flat[i * k : (i + 1) * k] for i in range(len(problems))]


def evaluate_prm(config, params, problems, responses: list[list[str]]) -> dict:
    """On policy samples ``responses`` (problem-major): per aggregate, AUC against the exact grader, within-problem
    AUC and best-of-k; per-step accuracy at 0.5 against the exact step labels; and the same rankings against
    process correctness (every step right) for ``min``."""
    samples = len(responses[0])
    steps = score_steps(config, params, problems, responses)
    correct = evaluation.grade(problems, responses)
    process = np.array([[process_correct(p, r) for r in row] for p, row in zip(problems, responses)], bool)
    out = {"sample_accuracy": float(correct.mean()), "sample_process_correct": float(process.mean()),
           f"pass_at_{samples}": float(correct.any(1).mean())}
    for how in AGGREGATES:
        scores = np.array([[aggregate(s, how) for s in row] for row in steps])
        out[how] = {
            "auc": evaluation.roc_auc(scores, correct),
            "within_problem_auc": evaluation.within_problem_auc(scores, correct),
            f"best_of_{samples}": evaluation.best_of_n_accuracy(scores, correct, samples),
        }
    labels = np.concatenate([step_labels(p, r) for p, row in zip(problems, responses) for r in row])
    probs = np.concatenate([s for row in steps for s in row])
    out["step_accuracy"] = float(((probs > 0.5) == (labels > 0)).mean())
    out["step_auc"] = evaluation.roc_auc(probs, labels > 0)
    out["steps"] = int(len(labels))
    out["step_positive_share"] = float(labels.mean())
    return out


def first_error_location(config, params, problems, rng: np.random.Generator) -> dict:
    """On corrupted references (one planted mistake each, every kind): the share where the PRM puts the first step
    under 0.5 exactly at the planted mistake, and the mean step probability before and from it."""
    candidates = [[corrupt.corrupt_solution(p, rng, kind) for kind in corrupt.KINDS] for p in problems]
    steps = score_steps(config, params, problems, candidates)
    hits, before, after = [], [], []
    for p, texts, row in zip(problems, candidates, steps):
        for text, probs in zip(texts, row):
            labels = np.asarray(step_labels(p, text))
            first = int(np.argmin(labels))  # every corruption has a wrong final answer: some label is 0
            hits.append(bool(probs[first] < 0.5 <= probs[:first].min(initial=1.0)))
            before += list(probs[:first])
            after += list(probs[first:])
    return {"corruptions": len(hits), "first_error_found": float(np.mean(hits)),
            "mean_prob_before_first_error": float(np.mean(before)), "mean_prob_from_first_error": float(np.mean(after))}


# ---------------------------------------------------------------- training


def train_prm(lm_config, lm_params, policy_config, policy_params, cfg: PRMTrainingConfig, progress: bool = True):
    """Returns ``(prm_config, params, info)``: the PRM started from the LM ``lm_params`` (the verifier), trained on
    the policy's samples; info has the data counts and the evaluation history on validation samples."""
    key = jax.random.key(cfg.seed)
    sample_key, init_key, eval_key = jax.random.split(key, 3)  # eval_key: the validation samples train_reward uses
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    problems = task.problems("train", cfg.problems, start=cfg.data_start)
    responses = evaluation.generate(policy_config, policy_params, problems, sample_key, cfg.temperature, cfg.samples)
    val = task.problems("val", cfg.eval_problems)
    val_responses = evaluation.generate(policy_config, policy_params, val, eval_key, cfg.temperature, cfg.eval_samples)
    pool_labels = [step_labels(p, r) for p, row in zip(problems, responses) for r in row]
    counts = {
        "pool_problems": len(problems),
        "pool_samples": cfg.samples,
        "candidates_per_group": 1 + len(CORRUPTION_MIX) + cfg.samples,
        "pool_sample_accuracy": float(evaluation.grade(problems, responses).mean()),
        "pool_sample_process_correct": float(np.mean([labels[-1] for labels in pool_labels])),
        "pool_step_positive_share": float(np.mean([x for labels in pool_labels for x in labels])),
        "sampling_seconds": time.perf_counter() - start,
    }

    config = prm_config(lm_config, cfg.extra_layers)
    params = prm_params_from_lm(lm_config, lm_params, init_key, cfg.extra_layers)
    optimizer = make_optimizer(cfg, params)
    opt_state = optimizer.init(params)
    order, cursor = rng.permutation(len(problems)), 0
    history, seen = [], []
    bar = tqdm(range(1, cfg.steps + 1), desc="prm", disable=not progress)
    for step in bar:
        if cursor + cfg.groups_per_batch > len(order):
            order, cursor = rng.permutation(len(problems)), 0
        rows = order[cursor : cursor + cfg.groups_per_batch]
        cursor += cfg.groups_per_batch
        chosen = [problems[i] for i in rows]
        batch = encode_candidates(chosen, training_candidates(chosen, [responses[i] for i in rows], rng))
        params, opt_state, loss, accuracy = prm_step(params, opt_state, config, optimizer, PRMBatch(*map(jnp.asarray, batch)),
                                                     (cfg.dense_weight, cfg.carried_weight), cfg.frozen_layers)
        seen.append((loss, accuracy))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            loss_mean, accuracy_mean = (float(x) for x in np.mean(jax.device_get(seen), axis=0))
            seen = []
            metrics = evaluate_prm(config, export_prm_params(params), val, val_responses)
            history.append({"step": step, "step_loss": loss_mean, "train_step_accuracy": accuracy_mean, **metrics,
                            "seconds": time.perf_counter() - start})
            bar.set_postfix(loss=f"{loss_mean:.4f}", auc_in=f"{metrics['min']['within_problem_auc']:.3f}",
                            best=f"{metrics['min'][f'best_of_{cfg.eval_samples}']:.3f}")
    params = export_prm_params(params)
    info = {
        "data": counts,
        "history": history,
        "first_error_on_val_corruptions": first_error_location(config, params, val, np.random.default_rng(cfg.seed + 1)),
        "verifier_on_the_same_val_samples": _likelihood_ranking(lm_config, lm_params, val, val_responses),
    }
    return config, params, info


def _likelihood_ranking(lm_config, lm_params, problems, responses) -> dict:
    """The starting LM's own ranking (mean clipped token log-prob, the likelihood verifier) on the same samples."""
    from nabla_jax.testbed.train_reward import teacher_ranking

    return teacher_ranking(lm_config, lm_params, problems, responses, clip=-6.0)
