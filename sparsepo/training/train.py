"""Train a policy with Ray Train: ``sparsepo train --config configs/<name>.yaml [key=value ...]``.

Runs on a local Ray instance (started on demand) or the cluster of ``RAY_ADDRESS`` / ``ray job submit``; with
``run.num_workers=0`` (Ray Train's local mode) in this process, without starting Ray (``sparsepo.training.local_mode``).
Before Ray starts, the config is validated and the models, data and run name are checked on the driver
(``sparsepo.config.preflight``); a mistake is one error line naming the file, row and field or the config key.
Each run gets a fresh name unless ``run.name`` is given; an existing run is only continued with ``--resume``.
Prints where the final checkpoint's plain Hugging Face policy folder is.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sparsepo.config.schema import TrainConfig, config_keys_help, load_config, with_run_name
from sparsepo.errors import run_cli
from sparsepo.io import resolve_storage

log = logging.getLogger("sparsepo.training.train")


def make_trainer(cfg: TrainConfig, callbacks: list | None = None):  # noqa: ANN201 - TorchTrainer import is deferred
    """A ``TorchTrainer`` for ``cfg``; ``callbacks`` lets a Tune trainable add ``TuneReportCallback``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sparsepo.training.local_mode import is_local, quiet_local_mode
    from sparsepo.training.trainer import train_loop_per_worker

    if is_local(cfg):
        quiet_local_mode()  # before ScalingConfig, which announces local mode at INFO
    # Local mode places no worker: asking the cluster for a default would start Ray for nothing.
    resources = None if cfg.run.use_gpu or is_local(cfg) else {"CPU": resolve_cpus_per_worker(cfg)}
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
    from sparsepo.training.hardware import default_cpus_per_worker

    return default_cpus_per_worker(cfg.run.num_workers)


def train(cfg: TrainConfig, check: bool = True):  # noqa: ANN201 - returns ray.train.Result
    """Fit ``cfg`` and return the Ray ``Result`` (``result.checkpoint.path`` + ``/policy`` is the HF folder).

    A missing ``run.name`` becomes a fresh one; with ``check`` the driver-side checks run first (see
    ``sparsepo.config.preflight``), so an existing run is never resumed unless ``run.resume`` says so.
    """
    from sparsepo.config.preflight import preflight
    from sparsepo.logs import quiet_driver, startup_mark

    startup_mark("driver: train() called")
    cfg = with_run_name(cfg)
    if check:
        found = preflight(cfg)
        startup_mark("driver: preflight done")
        log.info(f"[sparsepo] run {cfg.run.name}: {found.data_report}; storage {found.run_dir}")
    quiet_driver()
    return fit(cfg)


def fit(cfg: TrainConfig):  # noqa: ANN201 - returns ray.train.Result
    """Fit ``cfg`` from the driver (no checks); Ray Train's coordinator stays on the driver's node
    (``sparsepo.training.cluster``), so autoscaled worker nodes can be removed when idle. In local mode
    (``run.num_workers=0``) the loop runs here and neither the coordinator nor Ray is started."""
    from sparsepo.logs import startup_mark
    from sparsepo.training.cluster import pin_train_coordinator
    from sparsepo.training.local_mode import is_local, stored_result

    if not is_local(cfg):
        pin_train_coordinator()
    trainer = make_trainer(cfg)
    startup_mark("driver: trainer built, fit()")
    result = trainer.fit()
    return stored_result(cfg, result) if is_local(cfg) else result


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo train")
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--config", help="YAML config (see configs/); defaults apply when omitted")
    ap.add_argument("--resume", metavar="NAME", help="continue run NAME from its latest checkpoint")
    ap.add_argument("--check", action="store_true", help="validate config, models and data, then exit (no training)")
    ap.add_argument("--verbose", action="store_true", help="show Ray's and transformers' own logs too")
    ap.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. optim.lr=1e-5 loss.beta=0.2")
    ap.epilog = config_keys_help()
    return ap


def run(args: argparse.Namespace) -> int:
    """The ``train`` command on parsed ``args``."""
    from sparsepo.config.preflight import preflight
    from sparsepo.logs import VERBOSE_ENV, quiet_driver, startup_mark

    startup_mark("driver: interpreter + CLI + config imports")
    if args.verbose:
        import os

        os.environ[VERBOSE_ENV] = "1"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = list(args.overrides) + ([f"run.name={args.resume}", "run.resume=true"] if args.resume else [])
    cfg = with_run_name(load_config(args.config, overrides))
    startup_mark("driver: config loaded")
    found = preflight(cfg)
    startup_mark("driver: preflight done")
    print(f"[sparsepo] {cfg.method} run {cfg.run.name}: {found.data_report}; storage {found.run_dir}", flush=True)
    if args.check:
        print("[sparsepo] check passed: config, models and data are valid", flush=True)
        return 0
    quiet_driver()
    result = fit(cfg)
    if result.checkpoint is None:
        print("training finished without a checkpoint", file=sys.stderr)
        return 1
    print(f"policy checkpoint: {Path(result.checkpoint.path) / 'policy'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from sparsepo.cli import parse

    return run_cli(run, parse(build_parser(), sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    from sparsepo.envvars import bound_omp_spin

    bound_omp_spin()  # for the Ray workers this starts (torch is already loaded here)
    sys.exit(main())
