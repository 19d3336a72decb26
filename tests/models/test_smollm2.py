"""SmolLM2-135M-Instruct (a real pretrained Llama, Q4_1 GGUF): our loader and decoder against transformers' own
GGUF load on a 32-token chat prompt."""

import numpy as np
import torch

PROMPT = "A farmer has 17 sheep and all but 9 run away. How many sheep are left? Answer briefly."


def test_logits_match_transformers_gguf_load(smollm2_policy, smollm2_torch):
    ids = smollm2_policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_dict=False
    )
    ids = np.asarray(ids[-32:])[None]  # the last 32 tokens: the user turn and the assistant header
    assert ids.shape == (1, 32)
    with torch.no_grad():
        ref = smollm2_torch(torch.tensor(ids)).logits.numpy()
    ours = np.asarray(smollm2_policy.logits(ids))
    assert np.abs(ref).max() > 10  # real pretrained logits
    assert np.abs(ours - ref).max() <= 1e-3
    assert (ours.argmax(-1) == ref.argmax(-1)).all()


def test_config_read_from_gguf_metadata(smollm2_policy):
    cfg = smollm2_policy.config
    assert (cfg.family, cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == ("llama", 30, 576, 9, 3)
    assert cfg.vocab_size == len(smollm2_policy.tokenizer) == 49152
    assert cfg.tie_word_embeddings and "lm_head" not in smollm2_policy.params


def test_judge_reward_is_the_policys_yes_no_log_odds(smollm2_policy):
    from nabla_jax.rewards import load_reward

    judge = load_reward("judge:smollm2-135m-instruct", smollm2_policy)
    tokenizer = smollm2_policy.tokenizer
    prefix, postfix = judge.template("What is 2+3?", None)
    assert "Proposed answer: " in tokenizer.decode(prefix) and tokenizer.decode(postfix).endswith("assistant\n")
    yes, no = (tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Yes", "No"))
    for response in ("5", "7"):
        ids = np.asarray(prefix + tokenizer.encode(response, add_special_tokens=False) + postfix)
        logits = np.asarray(smollm2_policy.logits(ids))[0, -1]
        assert abs(float(judge.score(ids)[0]) - (logits[yes] - logits[no])) <= 1e-4
