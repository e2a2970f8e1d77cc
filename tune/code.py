"""Text-to-code (paper 3.5, Table 2): SFT model -> executed-solution pairs -> PO methods -> pass@k, one command.

    python tune/code.py                          # offline miniature: SmolLM2-135M, HumanEval subsets, CPU
    ray job submit --working-dir . -- python tune/code.py --paper --model <sft model> --mbpp mbpp \
        --storage-path s3://bucket/runs          # the paper's settings on a GPU cluster

Outputs go to ``<storage-path>/<name>/``: table2.csv and report.md (Table 2 layout, pair statistics, settings).
Pairs, the SFT model and the baseline evaluation are cached under ``<storage-path>/``; ``--resume`` continues an
interrupted sweep without rerunning finished trials.
"""

from __future__ import annotations

import os
import sys

# This script shares its name with the standard library's `code` module, which pdb (imported by torch) imports:
# keep tune/ off the import path, here and (Ray copies the driver's path) in every Ray worker.
if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import time  # noqa: E402

from sparsepo.experiments.code.experiment import CodeConfig, paper_preset, run_code  # noqa: E402


def parse(argv: list[str] | None = None) -> CodeConfig:
    d = CodeConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=d.model, help="SFT (or base) model: hub name, local folder or offline alias")
    ap.add_argument("--sft-steps", type=int, default=d.sft_steps, help="> 0: SFT the model on the training solutions first")
    ap.add_argument("--paper", action="store_true", help="the paper's settings (MBPP/HumanEval, 100 samples; GPU cluster)")
    ap.add_argument("--mbpp", default="mbpp", help="with --paper: MBPP hub name or local file")
    ap.add_argument("--methods", default=",".join(d.methods))
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--pair-samples", type=int, default=d.pair_samples)
    ap.add_argument("--eval-samples", type=int, default=d.eval_n)
    ap.add_argument("--backend", default=None, help="generation backend for pairs and baseline (hf, vllm, ray)")
    ap.add_argument("--workers", type=int, default=d.num_workers, help="Ray Train workers per trial")
    ap.add_argument("--use-gpu", action="store_true")
    ap.add_argument("--concurrency", type=int, default=None, help="trials at once (default: what the cluster holds)")
    ap.add_argument("--storage-path", default=d.storage_path, help="local folder or s3:// URI")
    ap.add_argument("--name", default=None, help="experiment name (default: code-<date>-<time>; needed for --resume)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("overrides", nargs="*", help="TrainConfig overrides for every trial, e.g. optim.lr=1e-6")
    a = ap.parse_args(argv)
    if a.resume and not a.name:
        ap.error("--resume needs the --name of the experiment to continue")
    cfg = CodeConfig(model=a.model, sft_steps=a.sft_steps, methods=tuple(m for m in a.methods.split(",") if m),
                     steps=a.steps, pair_samples=a.pair_samples, eval_n=a.eval_samples, num_workers=a.workers,
                     use_gpu=a.use_gpu, concurrency=a.concurrency, storage_path=a.storage_path,
                     name=a.name or time.strftime("code-%Y%m%d-%H%M%S"), resume=a.resume, seed=a.seed,
                     overrides=a.overrides)
    if a.paper:
        cfg = paper_preset(cfg, a.mbpp)
    return dataclasses.replace(cfg, backend=a.backend) if a.backend else cfg


def main(argv: list[str] | None = None) -> int:
    run_code(parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
