"""The official scripts' settings by name (source: the official repository's ``scripts/*.sh`` and README, listed
with file references in the project's reference notes). Each preset sets exactly what its script sets; explicit
settings override it. The official runs also keep the DTO variables in bfloat16 and take a repetition penalty from
the model's ``generation_config.json`` (which :class:`~nabla_jax.reasoner.NablaReasoner` reads when the
checkpoint has one)."""

from __future__ import annotations

from nabla_jax.reasoner.config import NablaConfig

# top-k is set by the AMC script and the README only; the MATH-500 and AIME runs take it (20) from Qwen2.5-Instruct's
# generation_config.json, so those presets leave it to the checkpoint (else this library's default, 20)
_SHARED = dict(learning_rate=0.01, max_iters=20, max_n_generations=8, confidence_threshold=0.97, reward_coeff=1.0,
               nll_coeff=1e-3, resample_temperature=0.5)

PRESETS: dict[str, dict] = {
    # scripts/qwen_ins_math500.sh
    "official-math500": dict(_SHARED, embedder="logits", grad_threshold=4.0, max_new_tokens=1024,
                             rollout_temperature=0.6, rollout_top_p=0.95, resample_top_p=0.95),
    # scripts/qwen_ins_aime24.sh, scripts/qwen_ins_aime25.sh
    "official-aime": dict(_SHARED, embedder="logits", grad_threshold=8.0, max_new_tokens=3072,
                          rollout_temperature=0.6, rollout_top_p=0.95, resample_top_p=0.95),
    # scripts/qwen_ins_amc.sh
    "official-amc": dict(_SHARED, embedder="latents", grad_threshold=4.0, max_new_tokens=1024,
                         rollout_temperature=0.7, rollout_top_p=0.8, resample_top_p=0.8, rollout_top_k=20,
                         resample_top_k=20),
    # the README's Python example
    "official-readme": dict(_SHARED, embedder="latents", grad_threshold=8.0, max_new_tokens=3072, max_iters=100,
                            rollout_temperature=0.7, rollout_top_p=0.8, resample_top_p=0.8, rollout_top_k=20,
                            resample_top_k=20),
}


def preset(name: str) -> NablaConfig:
    """The :class:`~nabla_jax.reasoner.NablaConfig` of a preset: the defaults with what its script sets."""
    return NablaConfig.from_settings(**script_settings(name))


def script_settings(name: str) -> dict:
    """What the preset's script sets, by flat setting name (the rest is left to the defaults, or, for the
    rollouts' top-k and repetition penalty, to the policy's generation_config.json)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
