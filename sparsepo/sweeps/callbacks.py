"""The Tune callbacks of a sweep: the loggers of every trial's progress (CSV, JSON, TensorBoard, MLflow, W&B)
and :class:`DropFinishedCheckpoints` for sweeps whose output is the results table."""

from __future__ import annotations

import importlib.util
from typing import Any


def logger_callbacks(tensorboard: bool, mlflow: bool | dict[str, Any], wandb: bool | dict[str, Any], name: str) -> list:
    """CSV and JSON progress loggers, TensorBoard events with ``tensorboard``, and MLflow / W&B loggers when
    asked (``True``, or a dict of the logger's arguments); ImportError when their package is missing."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    cbs: list[Any] = [CSVLoggerCallback(), JsonLoggerCallback()]
    if tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        cbs.append(TBXLoggerCallback())
    for flag, package, make in ((mlflow, "mlflow", _mlflow_callback), (wandb, "wandb", _wandb_callback)):
        if flag:
            if importlib.util.find_spec(package) is None:
                raise ImportError(f"{package}=True needs the {package} package: pip install {package}")
            cbs.append(make({} if flag is True else dict(flag), name))
    return cbs


def _mlflow_callback(args: dict[str, Any], name: str) -> Any:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(**{"experiment_name": name, **args})


def _wandb_callback(args: dict[str, Any], name: str) -> Any:
    from ray.air.integrations.wandb import WandbLoggerCallback

    return WandbLoggerCallback(**{"project": "sparsepo", "group": name, **args})


def _tune_callback_base() -> type:
    from ray.tune import Callback

    return Callback


class DropFinishedCheckpoints(_tune_callback_base()):
    """Deletes a trial's Train checkpoints once Tune records the trial complete, for sweeps whose output is the
    results table (the frontier's in-loop evaluation): each trial's last checkpoint (policy and optimizer
    state, 1.6 GB for SmolLM2) would otherwise stay, 100 GB for the zoo's 64 trials. Unfinished trials keep
    theirs, so a resumed sweep continues them; a finished trial is never rerun."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        import pyarrow.fs

        fs = trial.storage.storage_filesystem
        found = fs.get_file_info(pyarrow.fs.FileSelector(f"{trial.path}/train", allow_not_found=True))
        for f in found:
            if f.type == pyarrow.fs.FileType.Directory and f.base_name.startswith("checkpoint_"):
                fs.delete_dir(f.path)
