"""The decoder's configuration, read from (and written back to) a Hugging Face ``config.json``.

One frozen dataclass covers Llama 3.x, Qwen2/2.5, Qwen3 and SmolLM2 (a Llama). It is hashable, so it can be a
static argument of ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

CAUSAL_LM = "causal_lm"
SEQUENCE_CLASSIFICATION = "sequence_classification"
PROCESS_REWARD = "process_reward"  # a step-level PRM: the trunk, then Linear(d, d), ReLU, Linear(d, 2)

# architecture name in config.json -> (family, kind)
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", CAUSAL_LM),
    "Qwen2ForCausalLM": ("qwen2", CAUSAL_LM),
    "Qwen3ForCausalLM": ("qwen3", CAUSAL_LM),
    "LlamaForSequenceClassification": ("llama", SEQUENCE_CLASSIFICATION),
    "Qwen2ForSequenceClassification": ("qwen2", SEQUENCE_CLASSIFICATION),
    "Qwen3ForSequenceClassification": ("qwen3", SEQUENCE_CLASSIFICATION),
    "Qwen2ForProcessRewardModel": ("qwen2", PROCESS_REWARD),
    "LlamaForProcessRewardModel": ("llama", PROCESS_REWARD),
}
MODEL_TYPES = {"llama", "qwen2", "qwen3"}
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


class UnsupportedModelError(ValueError):
    """The checkpoint's architecture or one of its settings is outside what the decoder implements."""


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    family: str  # "llama" | "qwen2" | "qwen3"
    kind: str  # CAUSAL_LM | SEQUENCE_CLASSIFICATION
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_type: str = "default"
    # (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) for llama3; (factor,) for linear
    rope_scaling: tuple[float, ...] = ()
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    num_labels: int = 1
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        sizes = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                 "head_dim", "max_position_embeddings", "num_labels")
        for name in sizes:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_key_value_heads ({self.num_kv_heads}) must divide num_attention_heads ({self.num_heads})"
            )

    @property
    def is_classifier(self) -> bool:
        return self.kind == SEQUENCE_CLASSIFICATION

    @property
    def is_process_reward(self) -> bool:
        return self.kind == PROCESS_REWARD

    @property
    def is_reward_model(self) -> bool:
        """A model with a score head instead of an LM head (outcome classifier or PRM)."""
        return self.kind in (SEQUENCE_CLASSIFICATION, PROCESS_REWARD)

    @property
    def architecture(self) -> str:
        for name, (family, kind) in ARCHITECTURES.items():
            if family == self.family and kind == self.kind:
                return name
        raise AssertionError("unreachable")

    def replace(self, **changes: Any) -> "DecoderConfig":
        return dataclasses.replace(self, **changes)


def _as_tuple(value) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


def _num_labels(raw: dict) -> int:
    """As transformers: ``num_labels``, else the size of ``id2label``, else 2."""
    if raw.get("num_labels") is not None:
        return int(raw["num_labels"])
    return len(raw.get("id2label") or {}) or 2


def _rope_from_dict(raw: dict, where: str) -> tuple[float, str, tuple[float, ...]]:
    """Read rope settings from either the new ``rope_parameters`` or the legacy ``rope_theta``/``rope_scaling``."""
    params = dict(raw.get("rope_parameters") or {})
    legacy = raw.get("rope_scaling") or {}
    theta = params.get("rope_theta", raw.get("rope_theta", legacy.get("rope_theta", 10000.0)))
    merged = {**legacy, **params}
    rope_type = merged.get("rope_type", merged.get("type", "default")) or "default"
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedModelError(
            f"{where}: rope type {rope_type!r} is not supported (supported: {', '.join(SUPPORTED_ROPE_TYPES)})"
        )
    if merged.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedModelError(f"{where}: partial_rotary_factor != 1 is not supported")
    if rope_type == "llama3":
        scaling = (
            float(merged["factor"]),
            float(merged["low_freq_factor"]),
            float(merged["high_freq_factor"]),
            float(merged["original_max_position_embeddings"]),
        )
    elif rope_type == "linear":
        scaling = (float(merged["factor"]),)
    else:
        scaling = ()
    return float(theta), rope_type, scaling


def config_from_dict(raw: dict, where: str = "config.json") -> DecoderConfig:
    """Build a :class:`DecoderConfig` from the dict of a Hugging Face ``config.json``."""
    if not isinstance(raw, dict):
        raise UnsupportedModelError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    architectures = raw.get("architectures") or []
    model_type = raw.get("model_type")
    if architectures:
        arch = architectures[0]
        if arch not in ARCHITECTURES:
            raise UnsupportedModelError(
                f"{where}: unsupported architecture {arch!r}; supported: {', '.join(sorted(ARCHITECTURES))}"
            )
        family, kind = ARCHITECTURES[arch]
    elif model_type in MODEL_TYPES:
        family, kind = model_type, CAUSAL_LM
    else:
        raise UnsupportedModelError(f"{where}: unsupported model_type {model_type!r} and no known architecture")
    if model_type is not None and model_type != family:
        raise UnsupportedModelError(f"{where}: model_type {model_type!r} does not match architecture {architectures}")
    if raw.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"{where}: hidden_act {raw.get('hidden_act')!r} is not supported (only silu)")
    if raw.get("use_sliding_window", False):
        raise UnsupportedModelError(f"{where}: sliding-window attention is not supported")
    try:
        num_heads = int(raw["num_attention_heads"])
        hidden = int(raw["hidden_size"])
        theta, rope_type, scaling = _rope_from_dict(raw, where)
        attention_bias = bool(raw.get("attention_bias", False))
        return DecoderConfig(
            family=family,
            kind=kind,
            vocab_size=int(raw["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(raw["intermediate_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(raw.get("num_key_value_heads") or num_heads),
            head_dim=int(raw.get("head_dim") or hidden // num_heads),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_type=rope_type,
            rope_scaling=scaling,
            max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            qkv_bias=(family == "qwen2") or attention_bias,
            o_bias=(family != "qwen2") and attention_bias,
            mlp_bias=bool(raw.get("mlp_bias", False)),
            qk_norm=family == "qwen3",
            num_labels=_num_labels(raw) if kind == SEQUENCE_CLASSIFICATION else (2 if kind == PROCESS_REWARD else 1),
            pad_token_id=raw.get("pad_token_id"),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_ids=_as_tuple(raw.get("eos_token_id")),
        )
    except KeyError as missing:
        raise UnsupportedModelError(f"{where}: required field {missing} is missing") from None
    except UnsupportedModelError:
        raise
    except (TypeError, ValueError) as err:  # a field of the wrong type, or sizes that do not fit together
        raise UnsupportedModelError(f"{where}: {err}") from None


def load_config(path: str) -> DecoderConfig:
    """Read ``config.json`` from a checkpoint directory (or the file itself)."""
    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if not os.path.exists(file):
        raise FileNotFoundError(f"no config.json at {path}")
    with open(file, encoding="utf-8") as handle:
        try:
            raw = json.load(handle)
        except json.JSONDecodeError as err:
            raise UnsupportedModelError(f"{file}: not valid JSON ({err})") from None
    return config_from_dict(raw, where=file)


def config_to_dict(config: DecoderConfig) -> dict:
    """A ``config.json`` dict that transformers loads into the matching architecture."""
    rope = {"rope_type": config.rope_type, "rope_theta": config.rope_theta}
    if config.rope_type == "llama3":
        factor, low, high, original = config.rope_scaling
        rope.update(
            factor=factor, low_freq_factor=low, high_freq_factor=high, original_max_position_embeddings=int(original)
        )
    elif config.rope_type == "linear":
        rope.update(factor=config.rope_scaling[0])
    raw = {
        "architectures": [config.architecture],
        "model_type": config.family,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": rope,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": list(config.eos_token_ids) if len(config.eos_token_ids) != 1 else config.eos_token_ids[0],
    }
    if config.family == "llama":
        raw["attention_bias"] = config.qkv_bias
        raw["mlp_bias"] = config.mlp_bias
    if config.family == "qwen3":
        raw["attention_bias"] = config.qkv_bias
    if config.is_classifier:
        raw["num_labels"] = config.num_labels
        raw["id2label"] = {str(i): f"LABEL_{i}" for i in range(config.num_labels)}
        raw["label2id"] = {f"LABEL_{i}": i for i in range(config.num_labels)}
    return raw
