"""Small random-init GPT-2 and LLaMA models saved in Hugging Face layout, for every code path without downloads."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from geomcheck.capture.inputs import bundled_corpus_text

VOCAB = 512


def word_tokenizer(vocab_size: int = VOCAB) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the corpus' most frequent words; enough to drive text inputs."""
    words: dict[str, int] = {}
    for word in bundled_corpus_text().split():
        words[word] = words.get(word, 0) + 1
    specials = ["<unk>", "<s>", "</s>"]
    common = sorted(words, key=lambda w: (-words[w], w))[: vocab_size - len(specials)]
    vocab = {token: i for i, token in enumerate(specials + common)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def gpt2_config(**overrides) -> GPT2Config:
    settings = dict(n_layer=3, n_embd=32, n_head=4, n_positions=128, vocab_size=VOCAB, bos_token_id=1, eos_token_id=2)
    settings.update(overrides)
    return GPT2Config(**settings)


def llama_config(**overrides) -> LlamaConfig:
    settings = dict(
        num_hidden_layers=3,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        vocab_size=VOCAB,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


def save_tiny(directory: Path, family: str, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    if family == "gpt2":
        model = GPT2LMHeadModel(gpt2_config(**overrides))
    else:
        model = LlamaForCausalLM(llama_config(**overrides))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    word_tokenizer().save_pretrained(directory)
    return directory
