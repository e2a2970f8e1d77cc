"""Tiny random causal LMs (gpt2 / llama / gpt_neox) sharing one small byte-level BPE tokenizer.

They are test fixtures: 2 layers, hidden 128, 4 heads (head_dim 32, the smallest head size vLLM's CPU
attention backend accepts), context 256, vocabulary ~1000. Weights are random but deterministic (fixed seed).
Use `sparsepo.assets.tiny_model_path(arch)` to get a prepared, cached folder; the builders here write into
a given directory and know nothing about the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)

ARCHS: tuple[str, ...] = ("gpt2", "llama", "gpt_neox")
VOCAB_SIZE = 1000
CONTEXT = 256
HIDDEN = 128
HEADS = 4
LAYERS = 2
SEED = 0

UNK, BOS, EOS, PAD = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD]

# ChatML, like SmolLM2's, so code exercised on tiny models sees the same prompt layout.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Sequence[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it with bos/eos/pad/unk and the ChatML chat template.

    Byte-level means any string round-trips (unseen characters fall back to bytes). The tokenizer does not
    add bos/eos itself, like GPT-2 and SmolLM2.
    """
    if not texts:
        raise ValueError("train_tokenizer needs at least one training text")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=CONTEXT,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(arch: str, tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    """The config of the tiny `arch` model, with token ids taken from `tokenizer`."""
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vocab = len(tokenizer)
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab, n_positions=CONTEXT, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, **ids
        )
    # llama and gpt_neox name their sizes alike
    sizes = dict(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                 max_position_embeddings=CONTEXT, **ids)
    if arch == "llama":
        return LlamaConfig(
            intermediate_size=2 * HIDDEN,
            num_key_value_heads=HEADS // 2,  # grouped-query attention, as in SmolLM2
            head_dim=HIDDEN // HEADS,
            tie_word_embeddings=False,
            **sizes,
        )
    if arch == "gpt_neox":
        return GPTNeoXConfig(intermediate_size=4 * HIDDEN, **sizes)
    raise ValueError(f"unknown tiny model arch {arch!r}; choose one of {', '.join(ARCHS)}")


def build_tiny_model(arch: str, tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> Path:
    """Write a random-weight `arch` model (float32 safetensors) plus `tokenizer` into `out_dir`.

    Seeded with SEED, so the same tokenizer gives bit-identical weights on every CPU run.
    """
    config = tiny_config(arch, tokenizer)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
