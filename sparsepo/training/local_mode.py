"""``run.num_workers=0``: Ray Train's local mode, with checkpoints persisted as a run with workers persists them.

In local mode (Ray 2.60: ``ScalingConfig(num_workers=0)``) ``TorchTrainer.fit()`` calls the training loop in the
calling process (the ``sparsepo train`` driver, a sweep trial's actor): no Train controller, no worker actors, no
second import of torch and transformers, and for ``sparsepo train`` no Ray instance at all. But there
``ray.train.report`` keeps only the last metrics and checkpoint in memory, ``ray.train.get_checkpoint()`` starts
as None, and the run config's callbacks (Tune's ``TuneReportCallback``) are never called. :class:`LocalRun` does
what the controller would have done, with Ray's own classes: it copies each staged checkpoint to
``<storage_path>/<name>/checkpoint_<time>`` (``StorageContext``, local folder or URI) and registers it with Ray
Train's ``CheckpointManager``, which writes ``checkpoint_manager_snapshot.json`` and prunes to
``run.keep_checkpoints`` exactly as the controller's does. So ``Result.from_path`` and
:func:`sparsepo.training.checkpoint.complete_checkpoints` (resume, heatmaps, evaluations) find the checkpoints,
and a local run resumes from the latest of them as a worker group would. Inside a Tune trial each report is also
forwarded to Tune, as ``TuneReportCallback`` forwards a worker group's.

The loop's process is not a Ray worker here: the device and torch's threads come from the config
(:func:`local_device`, :func:`use_run_cpus`), since Ray's helpers for them would start Ray to ask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray.train
import torch

from sparsepo.config.schema import TrainConfig
from sparsepo.io import resolve_storage

log = logging.getLogger("sparsepo.training.local_mode")

# Ray's INFO lines that a local-mode loop would print at every report (its metrics, each persisted checkpoint)
_RAY_LOGGERS = ("ray.train.v2._internal.execution.train_fn_utils", "ray.train.v2._internal.execution.storage",
                "ray.train.v2._internal.execution.checkpoint.checkpoint_manager", "ray.train.v2.api.config")


def is_local(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` trains in Ray Train's local mode (``run.num_workers=0``)."""
    return cfg.run.num_workers == 0


@dataclass
class LocalRun:
    """A local-mode run's storage (``StorageContext``) and checkpoint registry (Ray Train's ``CheckpointManager``,
    loaded from the run's snapshot when the run already has one)."""

    storage: Any  # ray.train.v2's StorageContext: <storage_path>/<name> on its filesystem
    manager: Any  # ray.train.v2's CheckpointManager
    device: torch.device
    to_tune: bool  # inside a Tune trial: forward every report to Tune

    def context(self) -> Any:
        """``ray.train.get_context()`` of the local-mode loop (rank 0 of 1). Ray 2.60's public ``ray.train``
        functions refuse to run inside a Tune trial (a DeprecationWarning raised), where local mode itself works:
        its session utilities are read directly, here and in :meth:`report`."""
        from ray.train.v2._internal.execution.train_fn_utils import get_train_fn_utils

        return get_train_fn_utils().get_context()

    def latest(self) -> ray.train.Checkpoint | None:
        """The run's latest complete checkpoint in storage (what ``get_checkpoint`` gives a restarted worker group)."""
        found = self.manager.latest_checkpoint_result
        return found.checkpoint if found is not None else None

    def report(self, metrics: dict[str, float], staged: ray.train.Checkpoint | None) -> None:
        """Persist ``staged`` (a local folder) into the run's storage and register it (pruning old ones), then
        report ``metrics`` with the persisted checkpoint, to Ray Train's local session and, in a trial, to Tune."""
        from ray.train.v2._internal.execution.train_fn_utils import get_train_fn_utils
        from ray.train.v2._internal.execution.training_report import _TrainingReport

        persisted = None
        if staged is not None:
            persisted = self.storage.persist_current_checkpoint(staged, self.storage.make_default_checkpoint_dir_name())
        # after_report: registers (snapshot written, then the checkpoints past keep_checkpoints deleted) or counts
        self.manager.after_report(_TrainingReport(persisted, metrics, validation=False), [metrics])
        get_train_fn_utils().report(metrics, checkpoint=persisted)  # ray.train.report's: kept for fit()'s Result
        if self.to_tune:
            _forward_to_tune(metrics, persisted)


def start_local_run(cfg: TrainConfig) -> LocalRun | None:
    """In local mode: torch's threads set (:func:`use_run_cpus`), Ray's per-report lines quieted, and the run's
    :class:`LocalRun` (its storage folder created, its snapshot loaded). None with workers, where Ray Train's
    controller persists and restores."""
    if not is_local(cfg):
        return None
    use_run_cpus(cfg)
    quiet_local_mode()
    from ray.train import CheckpointConfig
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import CheckpointManager
    from ray.train.v2._internal.execution.storage import StorageContext
    from ray.tune.trainable.trainable_fn_utils import _in_tune_session

    class _LocalCheckpointManager(CheckpointManager):
        def _notify(self) -> None:
            """Wakes the controller's waiters on its event loop; local mode has neither."""

    storage = StorageContext(resolve_storage(cfg.run.storage_path), cfg.run.name)
    manager = _LocalCheckpointManager(CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints), storage)
    return LocalRun(storage, manager, local_device(cfg), to_tune=bool(_in_tune_session()))


def report(run: LocalRun | None, metrics: dict[str, float], checkpoint: ray.train.Checkpoint | None) -> None:
    """``ray.train.report`` with workers (the controller persists ``checkpoint``); :meth:`LocalRun.report` in
    local mode. The caller deletes the staged folder afterwards either way."""
    if run is None:
        ray.train.report(metrics, checkpoint=checkpoint)
    else:
        run.report(metrics, checkpoint)


def stored_result(cfg: TrainConfig, result: ray.train.Result) -> ray.train.Result:
    """``fit()``'s Result in local mode as with workers: Ray's local controller gives no run path and no
    ``best_checkpoints``; those come from the run folder's snapshot, the loop's return value and last metrics
    from ``result``. ``result`` itself when the run stored no checkpoint."""
    import dataclasses

    if result.checkpoint is None:
        return result
    stored = ray.train.Result.from_path(f"{resolve_storage(cfg.run.storage_path)}/{cfg.run.name}")
    return dataclasses.replace(stored, metrics=result.metrics, return_value=result.return_value)


def _forward_to_tune(metrics: dict[str, float], checkpoint: ray.train.Checkpoint | None) -> None:
    """What ``TuneReportCallback.after_report`` puts on its queue for a worker group's report: rank 0's metrics
    plus the persisted checkpoint's path (inside its filesystem) under ``CHECKPOINT_PATH_KEY``; Tune's session
    reports it (its training thread is this one: no queue needed)."""
    from ray import tune
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

    forwarded = dict(metrics)
    if checkpoint is not None:
        forwarded[CHECKPOINT_PATH_KEY] = checkpoint.path
    tune.report(forwarded)


def local_device(cfg: TrainConfig) -> torch.device:
    """The device of a local-mode loop: with ``run.use_gpu`` the process's current CUDA device (a trial's actor
    sees only the GPU Tune gave it), else the CPU. ``ray.train.torch.get_device`` would start Ray to ask."""
    if not cfg.run.use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("run.use_gpu: no CUDA device is visible to this process (run.num_workers=0 trains here); "
                           "set run.use_gpu=false or run on a machine with a GPU")
    return torch.device("cuda", torch.cuda.current_device())


def use_run_cpus(cfg: TrainConfig) -> int:
    """Torch intra-op threads of a local-mode loop: ``run.cpus_per_worker`` when set (a sweep sets it for each
    trial), else the CPUs Ray granted this process when it is a Ray actor, else all this machine's cores (what a
    one-worker run is granted by default); never more than the cores. Returns the thread count."""
    from sparsepo.training.hardware import granted_cpus, machine_cpus, use_cpus

    return use_cpus(cfg.run.cpus_per_worker or granted_cpus() or machine_cpus())


def quiet_local_mode() -> None:
    """Ray's per-report INFO lines off (unless verbose): in local mode they would reach the console directly."""
    from sparsepo.logs import verbose

    if not verbose():
        for name in _RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
