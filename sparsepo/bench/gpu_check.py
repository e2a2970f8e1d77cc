"""The GPU check: one script that, on one CUDA machine in under 10 minutes, prints the figures the GPU targets need.

    sparsepo bench gpu_check [--size 1b|tiny] [--batch-size 8] [--max-length 1024] [--steps 5] [--dry-run]
                             [--budget-s 540] [--backends hf vllm] [--check]

On a Llama-shaped model with random weights (``1b``: TinyLlama-1.1B's shape, 22 layers, hidden 2048, GQA 32/4
heads, vocabulary 32,000; written once, bf16, into a temporary folder), at ``--batch-size`` pairs of
``--max-length`` tokens, each part in its own process via the other benchmarks:
1. ``bench step``: bf16 step time, tokens/s, peak memory and model FLOP utilisation of DPO and SparsePO, with
   shared-prompt packing and without it (``--padded``), and the fused LM head against the eager one;
2. ``bench generate``: vLLM against HF generation on the same model, where vLLM is installed;
3. FSDP with one GPU: ``bench step --strategy fsdp --workers 1``, SparsePO with its policy wrapped by FSDP2
   (``run.strategy=fsdp``, one shard) against the unwrapped one: step time and per-worker memory.
Each part has a share of ``--budget-s``; a part that runs out is reported and the next one starts. Every part's
flags are checked (as its benchmark checks them) before the model is written or any part starts.
``--dry-run`` runs the same parts on the CPU with ``--size tiny`` and 2 steps: what the test suite checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sparsepo.bench.common import add_config_flags, config_from_args, preflight
from sparsepo.bench.generate import backend_names
from sparsepo.config.typed import spec

SIZES = {  # LlamaConfig fields
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048},
    "tiny": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4, "vocab_size": 1000, "max_position_embeddings": 512},
}


def write_random_llama(size: str, out: Path) -> Path:
    """A Llama-shaped model with random (seed 0) weights in bf16 and the tiny tokenizer, saved to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from sparsepo.assets import tiny_tokenizer_path

    torch.manual_seed(0)
    config = LlamaConfig(**SIZES[size], tie_word_embeddings=False)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_tokenizer_path()).save_pretrained(out)
    return out




@dataclass(frozen=True)
class GpuCheckConfig:
    size: Literal["1b", "tiny"] = spec("1b", help="1b: TinyLlama-1.1B's shape; tiny: 2 layers of 128")
    batch_size: int = spec(8, ge=1, help="pairs per step")
    max_length: int = spec(1024, ge=4, help="tokens per sequence")
    steps: int = spec(5, ge=1, help="timed steps per method")
    backends: tuple[str, ...] = spec(("hf", "vllm"), choices=backend_names,
                                     help="generation backends to compare (vllm where installed)")
    budget_s: float = spec(540.0, gt=0, help="wall-clock budget shared by the parts, in seconds")
    dry_run: bool = spec(False, help="on the CPU: --size tiny, 2 pairs of 64 tokens, 2 steps")

    def effective(self) -> GpuCheckConfig:
        """The settings the parts run with: ``--dry-run``'s tiny ones, and no vLLM where it is not installed."""
        cfg = dataclasses.replace(self, size="tiny", batch_size=2, max_length=64, steps=2) if self.dry_run else self
        if importlib.util.find_spec("vllm") is None:
            cfg = dataclasses.replace(cfg, backends=tuple(b for b in cfg.backends if b != "vllm") or ("hf",))
        return cfg


CONFIG = GpuCheckConfig


def parts(model: Path | str, cfg: GpuCheckConfig) -> list[tuple[str, list[str]]]:
    """(title, argv of ``sparsepo bench ...``) for every part of the check."""
    step = ["step", "--model", str(model), f"--batch-size={cfg.batch_size}", f"--max-length={cfg.max_length}",
            f"--steps={cfg.steps}", "--methods", "dpo", "sparsepo"]
    out = [("DPO and SparsePO, shared-prompt packing (bf16 where native)", step),
           ("DPO and SparsePO, padded (no packing)", [*step, "--padded"]),
           ("fused LM head against the eager head", [*step, "--methods", "sparsepo", "--fused-head=both"])]
    out.append(("FSDP with 1 GPU (run.strategy=fsdp, 1 shard) against no sharding",
                [*step, "--methods", "sparsepo", "--strategy=fsdp", "--workers=1"]))
    out.append((f"generation: {' vs '.join(cfg.backends)}",
                ["generate", "--model", str(model), "--backends", *cfg.backends, "--n-prompts=16",
                 "--max-new-tokens=32", "--repeats=1"]))
    return out


def check_part(argv: list[str]) -> Any:
    """A part's settings, checked by its own benchmark's parser and config (not its model: not written yet)."""
    module = importlib.import_module(f"sparsepo.bench.{argv[0]}")
    parser = module.build_parser()
    args = parser.parse_args(argv[1:])
    return config_from_args(module.CONFIG, args)


def run_part(title: str, argv: list[str], timeout_s: float) -> bool:
    """Run one part in a fresh process, streaming its table; False when it failed or ran out of time."""
    print(f"\n== {title}", flush=True)
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "sparsepo.cli", "bench", *argv], text=True,
                              capture_output=True, timeout=timeout_s, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    except subprocess.TimeoutExpired:
        print(f"   ran out of its {timeout_s:.0f} s", flush=True)
        return False
    print(proc.stdout.rstrip() or proc.stderr[-2000:], flush=True)
    print(f"   ({time.perf_counter() - t:.0f} s, exit {proc.returncode})", flush=True)
    return proc.returncode == 0


def device_line() -> str:
    import torch

    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"device: CPU ({os.cpu_count()} cpus), torch {torch.__version__}"


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo bench gpu_check")
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    return add_config_flags(ap, GpuCheckConfig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(GpuCheckConfig, args).effective()
    for _, part in parts("MODEL", cfg):  # every part's flags, before the model is written
        check_part(part)
    if preflight("gpu_check", args, [f"[bench gpu_check] {len(parts('MODEL', cfg))} parts' settings are valid"]):
        return 0
    start = time.perf_counter()
    print(device_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="sparsepo-gpu-check-") as d:
        model = write_random_llama(cfg.size, Path(d) / f"llama-{cfg.size}")
        print(f"model: random Llama {cfg.size} ({time.perf_counter() - start:.0f} s to write)", flush=True)
        todo = parts(model, cfg)
        failed = 0
        for i, (title, part) in enumerate(todo):
            left = cfg.budget_s - (time.perf_counter() - start)
            failed += not run_part(title, part, max(left / (len(todo) - i), 10.0))
    print(f"\ntotal {time.perf_counter() - start:.0f} s, {failed} part(s) failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
