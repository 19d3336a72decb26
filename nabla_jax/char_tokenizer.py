"""A character-level tokenizer with a ChatML chat template, as a transformers fast tokenizer.

Used by the bundled testbed models and by the tests' small random models; ``save_pretrained`` writes a
``tokenizer.json`` that transformers and :func:`nabla_jax.load_policy` read back.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<|im_start|>", "<|im_end|>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
DEFAULT_ALPHABET = string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", "")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_char_tokenizer(alphabet: str = DEFAULT_ALPHABET) -> PreTrainedTokenizerFast:
    """Ids 0..3 are ``<pad> <|im_start|> <|im_end|> <unk>``; then one id per character of ``alphabet``."""
    chars = list(dict.fromkeys(alphabet))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in chars:
        vocab.setdefault(char, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([PAD, BOS, EOS, UNK])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        chat_template=CHATML_TEMPLATE,
    )
    return tokenizer
