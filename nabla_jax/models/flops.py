"""FLOP estimates of the decoder's passes, from its config alone (used by every method's accounting).

A multiply-add counts as 2 FLOPs. A forward over ``new_tokens`` tokens that attend to ``context`` earlier tokens
costs the dense layers (2 x weights touched per token) plus attention scores and the weighted sum
(2 x 2 x layers x heads x head_dim per (query, key) pair). Embedding lookups are free; the output head
(LM head, or the score head of a classifier) counts when ``with_head``. A backward pass is counted as twice its
forward (the usual rule of thumb for gradients with respect to activations and inputs; no weight gradients are
needed at test time, so this is an upper estimate).
"""

from __future__ import annotations

from nabla_jax.models.config import DecoderConfig


def layer_weights(config: DecoderConfig) -> int:
    """Weights of one layer's matmuls (norm scales and biases are negligible and left out)."""
    d, hd = config.hidden_size, config.head_dim
    attention = d * config.num_heads * hd * 2 + d * config.num_kv_heads * hd * 2  # q, o; k, v
    mlp = 3 * d * config.intermediate_size
    return attention + mlp


def head_weights(config: DecoderConfig) -> int:
    if config.is_process_reward:
        return config.hidden_size * (config.hidden_size + 2)
    return config.hidden_size * (config.num_labels if config.is_classifier else config.vocab_size)


def forward_flops(config: DecoderConfig, new_tokens: int, context: int = 0, with_head: bool = True) -> float:
    """FLOPs of one forward over ``new_tokens`` tokens after ``context`` cached ones (causal attention)."""
    dense = 2.0 * new_tokens * config.num_layers * layer_weights(config)
    # query i (0-based among the new ones) attends to context + i + 1 keys
    pairs = new_tokens * context + new_tokens * (new_tokens + 1) / 2.0
    attention = 4.0 * config.num_layers * config.num_heads * config.head_dim * pairs
    head = 2.0 * (new_tokens if not config.is_classifier else 1) * head_weights(config) if with_head else 0.0
    return dense + attention + head


def decode_flops(config: DecoderConfig, prompt_len: int, generated: int, cached: int = 0) -> float:
    """FLOPs of generating ``generated`` tokens one at a time after a ``prompt_len``-token prefill (of its last
    ``prompt_len - cached`` tokens: the first ``cached`` tokens' keys/values given)."""
    prefill = forward_flops(config, prompt_len - cached, cached)
    dense_and_head = generated * (2.0 * config.num_layers * layer_weights(config) + 2.0 * head_weights(config))
    # step t attends to prompt_len + t + 1 keys
    pairs = generated * prompt_len + generated * (generated + 1) / 2.0
    attention = 4.0 * config.num_layers * config.num_heads * config.head_dim * pairs
    return prefill + dense_and_head + attention


def backward_flops(config: DecoderConfig, new_tokens: int, context: int = 0, with_head: bool = True) -> float:
    return 2.0 * forward_flops(config, new_tokens, context, with_head)


def dto_step_flops(lm: DecoderConfig, rm: DecoderConfig, lm_prefix: int, ahead: int, rm_prefix: int, rm_postfix: int):
    """One full DTO step (or a selection probe): both models forward and backward over the ahead chunk after their
    cached prefixes, the reward model also over its closing postfix."""
    lm_flops = forward_flops(lm, ahead, lm_prefix) + backward_flops(lm, ahead, lm_prefix)
    rm_new = ahead + rm_postfix
    rm_flops = forward_flops(rm, rm_new, rm_prefix) + backward_flops(rm, rm_new, rm_prefix)
    return lm_flops + rm_flops
