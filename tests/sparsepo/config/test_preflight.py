"""Tests for sparsepo.config.preflight checks that need no Ray: the QLoRA dependency check."""

from __future__ import annotations

import importlib.util

import pytest

from sparsepo.config.preflight import check_quantization
from sparsepo.config.schema import ConfigError, load_config


def test_check_quantization_passes_with_bitsandbytes_installed():
    check_quantization(load_config(None, ["method=dpo", "lora.r=4", "lora.quantize=nf4"]))


def test_check_quantization_names_the_key_and_the_install_when_bitsandbytes_is_missing_mocked(monkeypatch):
    """bitsandbytes is installed here; its absence is simulated by hiding it from the import system."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError, match=r"lora.quantize: 'nf4' needs bitsandbytes: pip install 'sparsepo\[qlora\]'"):
        check_quantization(load_config(None, ["method=dpo", "lora.r=4", "lora.quantize=nf4"]))
    check_quantization(load_config(None, ["method=dpo", "lora.r=4"]))  # no quantization: nothing needed


def test_oracle_methods_name_model_oracle_when_it_is_missing_unloadable_or_unused(tmp_path):
    from sparsepo.config.preflight import check_models

    with pytest.raises(ConfigError, match=r"model\.oracle: method 'tisdpo' weighs tokens by an oracle"):
        load_config(None, ["method=tisdpo"])
    with pytest.raises(ConfigError, match=r"model\.oracle: method 'dpo' reads no oracle"):
        load_config(None, ["method=dpo", "model.oracle=x"])
    cfg = load_config(None, ["method=sepo", "model.name=tiny-llama", f"model.oracle={tmp_path / 'no-run'}"])
    with pytest.raises(ConfigError, match=r"model\.oracle: cannot load"):
        check_models(cfg)
