"""Generation: sampling, batch-native rollouts (prefill and decode of all rows in one ``lax.while_loop``), and
continuous batching over a queue of prompts (:mod:`nabla_jax.generation.queue`)."""

from nabla_jax.generation.api import GenerationResult, encode_prompts, generate
from nabla_jax.generation.buckets import bucket_length, check_lengths, pad_prompts
from nabla_jax.generation.prompts import eos_token_ids, stop_token_sequences
from nabla_jax.generation.queue import batch_rollouts, queue_rollouts, rollout_queue
from nabla_jax.templates import chat_prompt_ids
from nabla_jax.generation.rollouts import (
    FINISH_EOS,
    FINISH_LENGTH,
    FINISH_NAMES,
    FINISH_NONFINITE,
    FINISH_STOP,
    Rollout,
    RolloutSpec,
    RolloutState,
    rollout,
    rollout_batch,
    rollout_init,
    rollout_logits,
    rollout_rows,
    rollout_step,
    stop_match,
)
from nabla_jax.generation.sampling import (
    SamplingConfig,
    filter_logits,
    filtered_distribution,
    sample_token,
    validate_sampling,
)

__all__ = [
    "FINISH_EOS",
    "FINISH_LENGTH",
    "FINISH_NAMES",
    "FINISH_NONFINITE",
    "FINISH_STOP",
    "GenerationResult",
    "Rollout",
    "RolloutSpec",
    "RolloutState",
    "SamplingConfig",
    "batch_rollouts",
    "bucket_length",
    "chat_prompt_ids",
    "check_lengths",
    "encode_prompts",
    "eos_token_ids",
    "filter_logits",
    "filtered_distribution",
    "generate",
    "pad_prompts",
    "queue_rollouts",
    "rollout",
    "rollout_batch",
    "rollout_init",
    "rollout_logits",
    "rollout_queue",
    "rollout_rows",
    "rollout_step",
    "sample_token",
    "stop_match",
    "stop_token_sequences",
    "validate_sampling",
]
