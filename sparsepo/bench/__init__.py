"""Benchmarks (``sparsepo bench <name>``; ``bench/<name>.py`` are shims): each prints figures, none asserts.

- ``step``: step time, tokens/s, peak memory per method as ratios to DPO (MFU on CUDA);
- ``vs_trl``: TRL's ``DPOTrainer`` against our trainer on identical pairs, model and batch;
- ``generate``: generation throughput of the HF, vLLM and Ray backends;
- ``profile_step``: the torch profiler's operator table for one training step;
- ``gpu_check``: the GPU figures (bf16 step, MFU, packing, fused head, generation) on a random ~1B Llama;
- ``mask_init``: where learned masks start per seed (shared hidden-state component, sparsity), both starts.

Each reads its flags into a typed settings class (``sparsepo/bench/common.py``): lists are separate values, and
every setting and model is checked before a model loads or a process starts (``--check``: only that).
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = ("step", "vs_trl", "generate", "profile_step", "gpu_check", "mask_init")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo bench")
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("benchmark", choices=BENCHMARKS, help="which benchmark (`sparsepo bench NAME --help`: its flags)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own flags")
    return ap


def run(args: argparse.Namespace) -> int:
    """The ``bench`` command: the chosen benchmark's ``main`` with the remaining flags."""
    return importlib.import_module(f"sparsepo.bench.{args.benchmark}").main(args.args) or 0
