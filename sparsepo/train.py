"""Train a policy with Ray Train: ``python -m sparsepo.train --config configs/<name>.yaml [key=value ...]``.

Runs on a local Ray instance (started on demand) or the cluster of ``RAY_ADDRESS`` / ``ray job submit``.
Prints where the final checkpoint's plain Hugging Face policy folder is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsepo.config import TrainConfig, load_config
from sparsepo.io import resolve_storage


def make_trainer(cfg: TrainConfig, callbacks: list | None = None):  # noqa: ANN201 - TorchTrainer import is deferred
    """A ``TorchTrainer`` for ``cfg``; ``callbacks`` lets a Tune trainable add ``TuneReportCallback``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sparsepo.trainer import train_loop_per_worker

    resources = None if cfg.run.use_gpu else {"CPU": resolve_cpus_per_worker(cfg)}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ScalingConfig(num_workers=cfg.run.num_workers, use_gpu=cfg.run.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=cfg.run.name,
            storage_path=resolve_storage(cfg.run.storage_path),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
            callbacks=callbacks,
        ),
    )


def resolve_cpus_per_worker(cfg: TrainConfig) -> float:
    """``run.cpus_per_worker``, or by default all the cluster's CPUs split between the workers."""
    if cfg.run.cpus_per_worker is not None:
        return cfg.run.cpus_per_worker
    from sparsepo.hardware import default_cpus_per_worker

    return default_cpus_per_worker(cfg.run.num_workers)


def train(cfg: TrainConfig):  # noqa: ANN201 - returns ray.train.Result
    """Fit ``cfg`` and return the Ray ``Result`` (``result.checkpoint.path`` + ``/policy`` is the HF folder)."""
    return make_trainer(cfg).fit()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sparsepo.train", description=__doc__)
    ap.add_argument("--config", help="YAML config (see configs/); defaults apply when omitted")
    ap.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. optim.lr=1e-5 loss.beta=0.2")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    result = train(cfg)
    if result.checkpoint is None:
        print("training finished without a checkpoint", file=sys.stderr)
        return 1
    print(f"policy checkpoint: {Path(result.checkpoint.path) / 'policy'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
