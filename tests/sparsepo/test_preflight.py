"""Tests for sparsepo.preflight checks that need no Ray: the QLoRA dependency check."""

from __future__ import annotations

import importlib.util

import pytest

from sparsepo.config import ConfigError, load_config
from sparsepo.preflight import check_quantization


def test_check_quantization_passes_with_bitsandbytes_installed():
    check_quantization(load_config(None, ["method=dpo", "lora.r=4", "lora.quantize=nf4"]))


def test_check_quantization_names_the_key_and_the_install_when_bitsandbytes_is_missing_mocked(monkeypatch):
    """bitsandbytes is installed here; its absence is simulated by hiding it from the import system."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError, match=r"lora.quantize: 'nf4' needs bitsandbytes: pip install 'sparsepo\[qlora\]'"):
        check_quantization(load_config(None, ["method=dpo", "lora.r=4", "lora.quantize=nf4"]))
    check_quantization(load_config(None, ["method=dpo", "lora.r=4"]))  # no quantization: nothing needed
