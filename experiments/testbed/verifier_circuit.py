"""A reward model's starting point with the check already wired in: the verifier LM's trunk, widened, and two layers
that compare every digit of the response with what the verifier predicted for it.

Training a scalar head on top of the verifier's trunk did not find the check (the dense prefix labels plateau at
75% per token and the within-problem AUC at 0.5; ``experiments/testbed/README.md``). The check itself is small,
so it is written here as weights, and training then adjusts it. In a ``hidden_size = 96`` model:

- dims 0..63 hold the verifier exactly: its trunk's weights padded with zeros (norm scales and epsilon rescaled for
  the wider RMS), so its residual stream is the verifier's;
- the embedding also writes a tiny one-hot (``IDENTITY_SCALE``) of each digit and of ``?`` into dims of their own,
  which the trunk never reads (it shifts the trunk's RMS norms by under 1e-6);
- layer A's attention: heads 0-1 attend to the previous position and carry the verifier's ten digit logits made
  there (``v = W_lm[:, digits]`` of the verifier's final-normed state); heads 2-3 attend to the prompt's ``?``
  once it has been seen, giving a flag that is 0 in the prompt and a positive per-problem constant after it, and
  write the constant ``CONSTANT`` into a dim of its own (a value bias). From here on that constant dominates every
  RMS norm, so the norms are near-linear and the circuit's values pass through them by their gains;
- layer A's MLP: 90 SwiGLU units, one per ordered pair of digits (u, v): ``silu(κ (L_u - L_v) + B (id_v - 1)) · flag``,
  summed: the "badness" ``Σ_u relu(L_u - L_x)`` of the token x at this position (0 when the verifier's argmax is x;
  the logit gaps to every digit it preferred otherwise), and 0 outside the response;
- layer B's attention: a soft maximum of the badness over every position so far; its MLP is zero;
- the final norm passes the maximum badness and the constant; the head reads ``bias - slope · max badness``.

So the score at a position says whether the response up to there holds no digit the verifier doubts, the outcome
head reads it at the last token, and the process head (``Linear, ReLU, Linear`` to two labels) at each step end.
"""

from __future__ import annotations

import numpy as np

from experiments.testbed import encoding
from nabla_jax.models.config import PROCESS_REWARD, SEQUENCE_CLASSIFICATION, DecoderConfig
from nabla_jax.models.rope import inverse_frequencies

HIDDEN = 96
DIGITS = "0123456789"
IDENTITY_SCALE = 1e-3
CONSTANT = 1e4
PREVIOUS_TOKEN_WEIGHTS = (300.0, 120.0, 120.0)  # squared q/k bias norms on the three fastest rotary pairs
GAP_SLOPE = 2.0  # κ
GATE_OFF = 400.0  # B: far above κ times any logit gap
SOFTMAX_SHARPNESS = 2.0  # β of the soft maximum over positions
HEAD_SLOPE, HEAD_BIAS = 0.5, 3.0
FLAG_GAIN = 12.0  # the verifier's residual RMS at the prompt's "?" is about 12: the flag comes out near 1

# dims of the widened residual stream
TRUNK = 64
IDENTITY = {c: TRUNK + i for i, c in enumerate(DIGITS + "?")}  # 64..74
LOGIT = {c: 75 + i for i, c in enumerate(DIGITS)}  # 75..84: the carried digit logits
FLAG, CONST, BAD, MAX_BAD = 85, 86, 87, 88


def circuit_config(verifier: DecoderConfig, kind: str = SEQUENCE_CLASSIFICATION) -> DecoderConfig:
    """The verifier's trunk widened to ``HIDDEN`` plus the two circuit layers, as a Qwen2 reward model."""
    if verifier.hidden_size != TRUNK:
        raise ValueError(f"the circuit is laid out for a {TRUNK}-wide verifier, got {verifier.hidden_size}")
    return verifier.replace(
        family="qwen2", qkv_bias=True, o_bias=False, kind=kind, num_labels=2 if kind == PROCESS_REWARD else 1,
        hidden_size=HIDDEN, num_layers=verifier.num_layers + 2,
        rms_norm_eps=verifier.rms_norm_eps * TRUNK / HIDDEN)


def _rotary_pair_biases(config: DecoderConfig, weights) -> tuple[np.ndarray, np.ndarray]:
    """One head's (q bias, k bias) whose rotary score peaks one position back (pairs 0.. of ``weights``)."""
    inv, half = inverse_frequencies(config), config.head_dim // 2
    q, k = np.zeros(config.head_dim, np.float32), np.zeros(config.head_dim, np.float32)
    for i, w in enumerate(weights):
        q[i] = np.sqrt(w)
        k[i], k[i + half] = np.sqrt(w) * np.cos(inv[i]), np.sqrt(w) * np.sin(inv[i])
    return q, k


def circuit_params(verifier: DecoderConfig, lm: dict, kind: str = SEQUENCE_CLASSIFICATION) -> tuple[DecoderConfig, dict]:
    """``(config, params)`` of the wired reward model (numpy float32 arrays; ``kind`` outcome or process)."""
    config = circuit_config(verifier, kind)
    lm = {k: (np.asarray(v) if not isinstance(v, dict) else v) for k, v in lm.items()}
    n_trunk, d, hd = verifier.num_layers, HIDDEN, config.head_dim
    heads, kv_heads, inter = config.num_heads, config.num_kv_heads, config.intermediate_size
    slow = hd // 2 - 1  # the slowest rotary pair: a content score there barely depends on the distance
    shrink = np.sqrt(TRUNK / HIDDEN)  # the trunk's RMS over 96 dims is shrink * its RMS over 64
    ids = {c: encoding.text_ids(c)[0] for c in DIGITS + "?"}
    layers = n_trunk + 2
    L = lambda *shape: np.zeros((layers, *shape), np.float32)  # noqa: E731
    p = {
        "embed": {"embedding": np.zeros((config.vocab_size, d), np.float32)},
        "final_norm": {"scale": np.zeros(d, np.float32)},
        "layers": {
            "attn": {"q_proj": {"kernel": L(d, heads * hd), "bias": L(heads * hd)},
                     "k_proj": {"kernel": L(d, kv_heads * hd), "bias": L(kv_heads * hd)},
                     "v_proj": {"kernel": L(d, kv_heads * hd), "bias": L(kv_heads * hd)},
                     "o_proj": {"kernel": L(heads * hd, d)}},
            "input_norm": {"scale": L(d)}, "post_attention_norm": {"scale": L(d)},
            "mlp": {"gate_proj": {"kernel": L(d, inter)}, "up_proj": {"kernel": L(d, inter)},
                    "down_proj": {"kernel": L(inter, d)}},
        },
    }
    emb = p["embed"]["embedding"]
    emb[:, :TRUNK] = np.asarray(lm["embed"]["embedding"])
    for c, i in ids.items():
        emb[i, IDENTITY[c]] = IDENTITY_SCALE
    src, dst = lm["layers"], p["layers"]
    for name in ("q_proj", "k_proj", "v_proj"):
        dst["attn"][name]["kernel"][:n_trunk, :TRUNK] = np.asarray(src["attn"][name]["kernel"])
    dst["attn"]["o_proj"]["kernel"][:n_trunk, :, :TRUNK] = np.asarray(src["attn"]["o_proj"]["kernel"])
    for name in ("gate_proj", "up_proj"):
        dst["mlp"][name]["kernel"][:n_trunk, :TRUNK] = np.asarray(src["mlp"][name]["kernel"])
    dst["mlp"]["down_proj"]["kernel"][:n_trunk, :, :TRUNK] = np.asarray(src["mlp"]["down_proj"]["kernel"])
    for name in ("input_norm", "post_attention_norm"):
        dst[name]["scale"][:n_trunk, :TRUNK] = np.asarray(src[name]["scale"]) * shrink
    final_scale = np.asarray(lm["final_norm"]["scale"]) * shrink
    lm_head = np.asarray(lm["lm_head"]["kernel"]) if "lm_head" in lm else np.asarray(lm["embed"]["embedding"]).T
    # the constant dominates the RMS from layer A's MLP on: a dim passes its raw value with gain K / sqrt(d)
    raw = CONSTANT / np.sqrt(d)

    a, b = n_trunk, n_trunk + 1
    attn = dst["attn"]
    # layer A, heads 0-1 (kv head 0): the previous position's digit logits
    dst["input_norm"]["scale"][a, :TRUNK] = final_scale
    dst["input_norm"]["scale"][a, IDENTITY["?"]] = 1.0 / IDENTITY_SCALE
    q_prev, k_prev = _rotary_pair_biases(config, PREVIOUS_TOKEN_WEIGHTS)
    attn["q_proj"]["bias"][a, 0:hd], attn["q_proj"]["bias"][a, hd:2 * hd] = q_prev, q_prev
    attn["k_proj"]["bias"][a, 0:hd] = k_prev
    for j, c in enumerate(DIGITS):
        attn["v_proj"]["kernel"][a, :TRUNK, j] = lm_head[:, ids[c]]
        attn["o_proj"]["kernel"][a, j, LOGIT[c]] = 1.0  # head 0's value dim j
    # layer A, heads 2-3 (kv head 1): attend to '?' once seen; the flag, and the constant from a value bias
    for h in (2, 3):
        attn["q_proj"]["bias"][a, h * hd + slow] = 20.0
    attn["k_proj"]["kernel"][a, IDENTITY["?"], hd + slow] = 20.0
    attn["v_proj"]["kernel"][a, IDENTITY["?"], hd] = FLAG_GAIN
    attn["v_proj"]["bias"][a, hd + 1] = CONSTANT
    attn["o_proj"]["kernel"][a, 2 * hd, FLAG] = 1.0
    attn["o_proj"]["kernel"][a, 2 * hd + 1, CONST] = 1.0
    # layer A's MLP: one unit per ordered digit pair (u, v), u != v
    post = dst["post_attention_norm"]["scale"]
    for c in DIGITS:
        post[a, LOGIT[c]] = raw
        post[a, IDENTITY[c]] = raw / IDENTITY_SCALE
    post[a, FLAG], post[a, CONST] = raw, 1.0 / np.sqrt(d)
    gate, up, down = dst["mlp"]["gate_proj"]["kernel"], dst["mlp"]["up_proj"]["kernel"], dst["mlp"]["down_proj"]["kernel"]
    unit = 0
    for u in DIGITS:
        for v in DIGITS:
            if u == v:
                continue
            gate[a, LOGIT[u], unit] += GAP_SLOPE
            gate[a, LOGIT[v], unit] -= GAP_SLOPE
            gate[a, IDENTITY[v], unit] = GATE_OFF
            gate[a, CONST, unit] = -GATE_OFF
            up[a, FLAG, unit] = 1.0
            down[a, unit, BAD] = 1.0 / GAP_SLOPE
            unit += 1
    # layer B's attention: a soft maximum of the badness over every position so far (head 0, kv head 0)
    dst["input_norm"]["scale"][b, BAD] = raw
    dst["input_norm"]["scale"][b, CONST] = 1.0 / np.sqrt(d)
    attn["q_proj"]["bias"][b, slow] = 4.0
    attn["k_proj"]["kernel"][b, BAD, slow] = SOFTMAX_SHARPNESS * np.sqrt(hd) / 4.0
    attn["v_proj"]["kernel"][b, BAD, 0] = 1.0
    attn["o_proj"]["kernel"][b, 0, MAX_BAD] = 1.0
    dst["post_attention_norm"]["scale"][b, CONST] = 1.0 / np.sqrt(d)
    # the final norm passes the maximum badness and the constant
    p["final_norm"]["scale"][MAX_BAD] = raw
    p["final_norm"]["scale"][CONST] = 1.0 / np.sqrt(d)
    if kind == PROCESS_REWARD:
        hidden = np.zeros((d, d), np.float32)
        hidden[MAX_BAD, 0], hidden[CONST, 1] = 1.0, 1.0
        out = np.zeros((d, 2), np.float32)
        out[0, 1], out[1, 1] = -HEAD_SLOPE, HEAD_BIAS  # label 1 (no mistake yet): bias - slope * max badness
        p["score"] = {"hidden": {"kernel": hidden, "bias": np.zeros(d, np.float32)},
                      "out": {"kernel": out, "bias": np.zeros(2, np.float32)}}
    else:
        score = np.zeros((d, 1), np.float32)
        score[MAX_BAD, 0], score[CONST, 0] = -HEAD_SLOPE, HEAD_BIAS
        p["score"] = {"kernel": score}
    return config, p
