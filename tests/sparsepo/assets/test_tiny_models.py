"""Tests for sparsepo.assets.tiny_models and the prepared tiny models (loaded from the asset cache)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparsepo.assets import load_sentences, tiny_models


def test_tiny_model_loads_and_runs_a_forward(tiny_arch_path):
    arch, path = tiny_arch_path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    cfg = model.config
    assert cfg.model_type == arch and cfg.num_hidden_layers == 2 and cfg.num_attention_heads == 4
    assert cfg.hidden_size // cfg.num_attention_heads == 32  # smallest head size vLLM's CPU attention takes
    assert cfg.vocab_size == len(tok) == tiny_models.VOCAB_SIZE
    assert (cfg.eos_token_id, cfg.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    batch = tok(["a gorgeous film .", "dull"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()
    assert batch["attention_mask"][1, -1] == 0  # right padding


def test_tiny_model_context_is_256(tiny_arch_path):
    arch, path = tiny_arch_path
    model = AutoModelForCausalLM.from_pretrained(path)
    context = model.config.n_positions if arch == "gpt2" else model.config.max_position_embeddings
    assert context == tiny_models.CONTEXT == AutoTokenizer.from_pretrained(path).model_max_length


def test_tiny_model_build_is_deterministic(tiny_gpt2_path, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_path)
    tiny_models.build_tiny_model("gpt2", tok, tmp_path)
    cached, rebuilt = (
        load_file(tiny_gpt2_path / "model.safetensors"),
        load_file(tmp_path / "model.safetensors"),
    )
    assert cached.keys() == rebuilt.keys()
    assert all(torch.equal(cached[k], rebuilt[k]) for k in cached)


def test_all_tiny_models_share_one_tokenizer(tiny_model_paths):
    files = {arch: (p / "tokenizer.json").read_bytes() for arch, p in tiny_model_paths.items()}
    assert len(set(files.values())) == 1


def test_tokenizer_round_trips_and_has_distinct_specials(tiny_gpt2_path):
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_path)
    for text in ["the film is a gorgeous mess .", "Unseen: CAPS, café ☃ & 12345\n\ttabs"]:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    ids = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
    assert None not in ids and len(ids) == 4
    # trained on the review sentences: common words are single tokens, unlike random bytes
    assert len(tok(" film")["input_ids"]) == 1


def test_chat_template_renders_chatml_and_tokenises(tiny_llama_path):
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi there"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert (
        text
        == "<|im_start|>system\nbe nice<|im_end|>\n<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]
    assert ids.count(tok.bos_token_id) == 3 and ids.count(tok.eos_token_id) == 2  # specials are single tokens
    assert tok.decode(ids) == text


def test_train_tokenizer_is_deterministic():
    texts = [r["text"] for r in load_sentences()[:300]]
    a, b = (
        tiny_models.train_tokenizer(texts, vocab_size=400),
        tiny_models.train_tokenizer(texts, vocab_size=400),
    )
    assert a.get_vocab() == b.get_vocab() and len(a) == 400
    assert a.chat_template == tiny_models.CHAT_TEMPLATE and a.padding_side == "right"
    with pytest.raises(ValueError, match="at least one"):
        tiny_models.train_tokenizer([])


def test_tiny_config_rejects_unknown_arch(tiny_gpt2_path):
    with pytest.raises(ValueError, match="unknown tiny model arch 'mamba'"):
        tiny_models.tiny_config("mamba", AutoTokenizer.from_pretrained(tiny_gpt2_path))
