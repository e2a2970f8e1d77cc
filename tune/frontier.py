"""Sentiment-control reward-KL frontier (paper 3.2): pairs, a methods x beta sweep on Ray Tune, fronts, plots, report.

    python tune/frontier.py                                   # offline default: SmolLM2-135M, Pang & Lee, CPU
    ray job submit --working-dir . -- python tune/frontier.py --paper-grid --storage-path s3://bucket/runs

Outputs go to ``<storage-path>/<name>/`` (name: ``frontier-<date>-<time>`` unless ``--name``): points.csv/.parquet
(with the reference point and 95% CIs), per_prompt.csv, train_points.csv, front_by_method.csv, front_overall.csv,
matched_kl.csv, frontier.png, sparsity.png, sparsity_rejected.png, report.md. ``--resume`` continues an interrupted
sweep without rerunning finished trials. ``--paper-grid`` applies ``paper_preset()`` (the paper's setup, for GPUs).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from sparsepo.experiments.sentiment.frontier import FrontierConfig, paper_preset, run_frontier


def floats(s: str) -> tuple[float, ...]:
    return tuple(float(x) for x in s.split(",") if x)


def parse(argv: list[str] | None = None) -> FrontierConfig:
    # --paper-grid: the paper's whole setup (paper_preset) becomes the defaults that other flags override.
    d = FrontierConfig(**paper_preset()) if "--paper-grid" in (sys.argv[1:] if argv is None else argv) else FrontierConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=d.model, help="policy/SFT model: hub name, local folder or offline alias")
    ap.add_argument("--ref", default=None, help="reference model (default: --model)")
    ap.add_argument("--reviews", default=d.reviews, help="pang-lee (offline), imdb, or a local file with a text column")
    ap.add_argument("--reviews-split", default=d.reviews_split)
    ap.add_argument("--reward", default=d.reward, choices=["vader", "hf"], help="sentiment scorer")
    ap.add_argument("--reward-model", default=None, help="HF classifier name or path for --reward hf")
    ap.add_argument("--methods", default=",".join(d.methods))
    ap.add_argument("--betas", default=",".join(map(str, d.betas)))
    ap.add_argument("--simpo-betas", default=",".join(map(str, d.simpo_betas)))
    ap.add_argument("--paper-grid", action="store_true",
                    help="the paper's setup (IMDB, RoBERTa reward, methods and beta grids, vLLM evaluation; GPUs)")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--eval-every", type=int, default=d.eval_every)
    ap.add_argument("--train-prompts", type=int, default=d.n_train_prompts)
    ap.add_argument("--test-prompts", type=int, default=d.n_test_prompts)
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help="pairs per worker per step")
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--workers", type=int, default=d.num_workers, help="Ray Train workers per trial")
    ap.add_argument("--use-gpu", action="store_true", default=d.use_gpu)
    ap.add_argument("--concurrency", type=int, default=None, help="trials at once (default: what the cluster holds)")
    ap.add_argument("--storage-path", default=d.storage_path, help="local folder or s3:// URI")
    ap.add_argument("--name", default=None, help="experiment name (default: frontier-<date>-<time>; needed for --resume)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("overrides", nargs="*", help="TrainConfig overrides for every trial, e.g. optim.grad_accum=4")
    a = ap.parse_args(argv)
    if a.resume and not a.name:
        ap.error("--resume needs the --name of the experiment to continue")
    return dataclasses.replace(
        d, model=a.model, ref=a.ref, reviews=a.reviews, reviews_split=a.reviews_split, reward=a.reward,
        reward_kwargs={"model": a.reward_model} if a.reward_model else d.reward_kwargs,
        methods=tuple(m for m in a.methods.split(",") if m), betas=floats(a.betas), simpo_betas=floats(a.simpo_betas),
        steps=a.steps, eval_every=a.eval_every, n_train_prompts=a.train_prompts, n_test_prompts=a.test_prompts,
        batch_size=a.batch_size, lr=a.lr, num_workers=a.workers, use_gpu=a.use_gpu, concurrency=a.concurrency,
        storage_path=a.storage_path, name=a.name or time.strftime("frontier-%Y%m%d-%H%M%S"), resume=a.resume,
        seed=a.seed, overrides=a.overrides,
    )


def main(argv: list[str] | None = None) -> int:
    run_frontier(parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
