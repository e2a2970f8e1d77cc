"""Ray Tune sweeps over ``TrainConfig``: every trial is one Ray Train run.

Ray 2.60 runs Train V2, where a trainer is no longer a Tune trainable: :func:`trial_trainable` is a Tune
*function* trainable that builds the trial's ``TrainConfig``, fits a ``TorchTrainer`` (``make_trainer``) and
forwards the workers' reports to Tune with ``TuneReportCallback``. The trial reserves only its driver's
resources (``driver_cpus``); the Train workers get their own placement group outside the trial's, so
:func:`run_sweep` bounds ``max_concurrent_trials`` by what the cluster holds for whole trials (driver + workers):
otherwise drivers could take every CPU and their workers would wait forever.

A search space maps dotted config keys (``loss.beta``, ``optim.lr``, ``mask.sharing``, ``method``...) to a spec::

    loss.beta: {grid: [0.05, 0.1, 0.2]}        # an axis: every value (search=grid) / categorical otherwise
    mask.weight_decay: {choice: [0.0, 0.01]}   # same as grid for search=grid, sampled otherwise
    optim.lr: {loguniform: [1.0e-6, 1.0e-4]}   # also uniform: [lo, hi], randint: [lo, hi) (sampled)
    optim.max_steps: 8                         # a constant ({value: x} for a mapping constant)
    mask_kind:                                 # a named bundle of keys, one categorical axis
      variants:
        common: {method: sparsepo, mask.sharing: common}
        mapo: {method: mapo}

``search="grid"`` enumerates every discrete axis and samples continuous ones ``num_samples`` times per grid
point (Tune's variant generation); ``"random"`` and ``"optuna"`` sample ``num_samples`` trials in all.
A trial that changes ``method`` drops the base config's ``loss`` entries the new method does not take.

This module runs the sweep; the parts live beside it, and every public name is importable from here too:
one trial (:mod:`.trials`), the results tables (:mod:`.results`), the Tune callbacks (:mod:`.callbacks`), the
trials' share of the cluster (:mod:`.resources`) and the search space's specs (:mod:`.search_space`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsepo.config.schema import TrainConfig
from sparsepo.envvars import temporary_env
from sparsepo.io import is_remote, resolve_storage
from sparsepo.sweeps.callbacks import DropFinishedCheckpoints, logger_callbacks
from sparsepo.sweeps.resources import default_max_concurrent, split_trial_cpus, trial_demand, trial_resources
from sparsepo.sweeps.results import best_results, results_frame, save_results
from sparsepo.sweeps.search_space import DISCRETE, check_space, load_space, to_tune
from sparsepo.sweeps.trials import (
    BASE_KEY,
    EXPERIMENT_KEY,
    VARIANTS_KEY,
    build_trial_config,
    saved_history,
    trial_dirname,
    trial_params,
    trial_trainable,
)
from sparsepo.training.cluster import pin_train_coordinator

__all__ = [  # run_sweep and its parts' public names, re-exported: callers import them all from here
    "BASE_KEY", "EXPERIMENT_KEY", "PATH_KEYS", "SEARCHES", "VARIANTS_KEY", "DropFinishedCheckpoints", "best_results",
    "build_trial_config", "default_max_concurrent", "load_space", "results_frame", "run_sweep", "save_results",
    "saved_history", "trial_dirname", "trial_params", "trial_trainable",
]

SEARCHES = ("grid", "random", "optuna")
PATH_KEYS = ("model.name", "model.ref", "data.path", "run.storage_path", "run.resume_from")
_MAX_CHECKED_COMBOS = 4096


@dataclass(frozen=True)
class _Experiment:
    """Where a sweep lives: ``<storage>/<name>`` (local folder or URI)."""

    storage: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class _Search:
    """How a new sweep searches, as :func:`run_sweep` was asked (checked by :func:`_check_sweep_args`)."""

    search: str
    metrics: list[str]
    modes: list[str]
    multi: bool  # metric was a list: multi-objective (optuna)
    num_samples: int
    scheduler: str | None
    scheduler_args: dict[str, Any] | None
    driver_cpus: float
    max_concurrent_trials: int | None


def run_sweep(
    base: TrainConfig,
    space: str | Path | dict[str, Any],
    *,
    search: str = "grid",
    num_samples: int = 1,
    metric: str | Sequence[str] = "loss",
    mode: str | Sequence[str] = "min",
    scheduler: str | None = None,
    scheduler_args: dict[str, Any] | None = None,
    max_concurrent_trials: int | None = None,
    driver_cpus: float = 1.0,
    storage_path: str | None = None,
    name: str | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    tensorboard: bool = True,
    mlflow: bool | dict[str, Any] = False,
    wandb: bool | dict[str, Any] = False,
):  # noqa: ANN201 - returns ray.tune.ResultGrid (import deferred)
    """Run (or, with ``resume``, continue) a sweep; returns the ``ResultGrid``.

    ``metric``/``mode`` may be lists (multi-objective, ``search="optuna"`` only). ``scheduler="asha"`` stops
    weak trials early on ``metric`` at reported ``step`` s (``scheduler_args``: ``grace_period``,
    ``reduction_factor``, ``max_t``; default ``max_t`` is ``optim.max_steps``). ``max_concurrent_trials``
    defaults to how many whole trials (driver + Train workers) the cluster holds. The experiment lives at
    ``<storage_path>/<name>`` (local folder or URI; default storage: ``base.run.storage_path``): per trial
    Tune's progress (``result.json``, ``progress.csv``, TensorBoard events unless ``tensorboard=False``) and the
    Train run's checkpoints under ``train/``. ``resume=True`` restores the interrupted experiment
    ``<storage_path>/<name>``: finished trials are kept as they are, unfinished and errored ones continue.

    A trial that Tune stops early (ASHA) ends its Train controller abruptly; Ray Train's PlacementGroupCleaner
    then frees the workers' placement group through Ray's State API. Without a dashboard (or with several
    Ray instances on one host, where the cleaner cannot tell which to ask) those resources stay reserved until
    the sweep's Ray job ends.
    """
    metrics, modes = _check_sweep_args(search, metric, mode, scheduler, resume, name)
    base_values = _absolute_paths(base.to_dict())
    experiment = _setup_experiment(base, base_values, storage_path, name, resume)
    trainable = _setup_trainable(driver_cpus)
    if resume:
        tuner = _restored_tuner(experiment.path, trainable, list(callbacks))
    else:
        how = _Search(search, metrics, modes, not isinstance(metric, str), num_samples, scheduler, scheduler_args,
                      driver_cpus, max_concurrent_trials)
        loggers = [*logger_callbacks(tensorboard, mlflow, wandb, experiment.name), *callbacks]
        tuner = _fresh_tuner(base, base_values, load_space(space), trainable, experiment, loggers, how)
    pin_train_coordinator()
    with temporary_env(**_setup_env(base)):
        return tuner.fit()


def _setup_experiment(base: TrainConfig, base_values: dict[str, Any], storage_path: str | None, name: str | None,
                      resume: bool) -> _Experiment:
    """The sweep's place (default storage: the base config's; default name: method and time); a new sweep
    refuses a place that already holds an experiment."""
    from ray import tune

    storage = resolve_storage(storage_path or base_values["run"]["storage_path"])
    experiment = _Experiment(storage, name or f"sweep-{base.method}-{time.strftime('%Y%m%d-%H%M%S')}")
    if not resume and tune.Tuner.can_restore(experiment.path):
        raise FileExistsError(f"{experiment.path} already holds a Tune experiment: pass resume=True or another name")
    return experiment


def _setup_trainable(driver_cpus: float) -> Any:
    """The trial trainable, reserving its driver's CPUs (the Train workers reserve their own; a local-mode trial
    the training's too: :func:`~sparsepo.sweeps.resources.trial_resources`)."""
    import functools

    from ray import tune

    return tune.with_resources(trial_trainable, functools.partial(trial_resources, driver_cpus=driver_cpus))


def _setup_env(base: TrainConfig) -> dict[str, str]:
    """Tune's environment for the sweep's run."""
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}  # we pass the loggers we want ourselves
    if base.run.evaluator:  # eval metrics come only with evaluator steps, not in every report
        env["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    return env


def _restored_tuner(experiment: str, trainable: Any, callbacks: list[Any]):  # noqa: ANN202 - ray.tune.Tuner
    """The interrupted experiment's Tuner: finished trials kept, unfinished and errored ones continued.

    Tune restores the callbacks it pickled with the experiment; each of them that has a counterpart of the same
    class in ``callbacks`` (the driver's, e.g. the checkpoint evaluations whose results the caller collects)
    is replaced by it, so the events of the resumed trials reach the caller's instance.
    """
    from ray import tune

    if not tune.Tuner.can_restore(experiment):
        raise FileNotFoundError(f"no Tune experiment to resume at {experiment}")
    tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
    run_config = tuner._local_tuner.get_run_config()  # Tuner.restore takes no RunConfig (Ray 2.60)
    fresh = {type(c) for c in callbacks}
    run_config.callbacks = [c for c in run_config.callbacks or [] if type(c) not in fresh] + callbacks
    return tuner


def _fresh_tuner(base: TrainConfig, base_values: dict[str, Any], space: dict[str, Any], trainable: Any,
                 experiment: _Experiment, callbacks: list[Any], how: _Search):  # noqa: ANN202 - ray.tune.Tuner
    """A new Tuner over ``space``; CPUs per Train worker and concurrent trials default to what the cluster holds."""
    from ray import tune

    param_space = _param_space(base_values, space, how.search, experiment.path)  # holds base_values itself
    max_concurrent = _setup_resources(base_values, space, how)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=None if how.multi else how.metrics[0],
            mode=None if how.multi else how.modes[0],
            search_alg=_search_alg(how, base.run.seed),
            scheduler=_scheduler(how.scheduler, how.scheduler_args, base.optim.max_steps),
            num_samples=how.num_samples,
            max_concurrent_trials=max_concurrent,
            trial_dirname_creator=trial_dirname,
        ),
        # A trial whose node dies (its Train controller with it) restarts; its Train run resumes from its checkpoint.
        run_config=tune.RunConfig(name=experiment.name, storage_path=experiment.storage, callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=base.run.max_failures)),
    )


def _setup_resources(base_values: dict[str, Any], space: dict[str, Any], how: _Search) -> int:
    """Starts Ray if it is not running; sets ``run.cpus_per_worker`` in ``base_values`` when neither the config
    nor the space does; returns how many trials run at once (default: as many whole trials as the cluster holds)."""
    import ray

    if not ray.is_initialized():
        ray.init()
    if base_values["run"]["cpus_per_worker"] is None and "run.cpus_per_worker" not in space:
        base_values["run"]["cpus_per_worker"] = split_trial_cpus(base_values, space, how.driver_cpus,
                                                                 how.max_concurrent_trials)
    if how.max_concurrent_trials is not None:
        return how.max_concurrent_trials
    return default_max_concurrent(trial_demand(base_values, space, how.driver_cpus), ray.cluster_resources())


def _check_sweep_args(
    search: str, metric: str | Sequence[str], mode: str | Sequence[str], scheduler: str | None, resume: bool, name: str | None
) -> tuple[list[str], list[str]]:
    """(metrics, modes) as lists; ValueError for an unknown search/scheduler or unmatched modes."""
    multi = not isinstance(metric, str)
    metrics, modes = ([metric], [mode]) if not multi else (list(metric), list(mode) if not isinstance(mode, str) else [])
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    if len(modes) != len(metrics) or any(m not in ("min", "max") for m in modes):
        raise ValueError(f"mode must give 'min' or 'max' for each metric {metrics}, got {mode!r}")
    if multi and (search != "optuna" or scheduler is not None):
        raise ValueError("a list of metrics (multi-objective) needs search='optuna' and no scheduler")
    if scheduler not in (None, "asha"):
        raise ValueError(f"scheduler must be None or 'asha', got {scheduler!r}")
    if resume and not name:
        raise ValueError("resume=True needs the name of the experiment to continue")
    return metrics, modes


def _search_alg(how: _Search, seed: int) -> Any:
    if how.search != "optuna":
        return None
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=how.metrics if how.multi else None, mode=how.modes if how.multi else None, seed=seed)


def _scheduler(scheduler: str | None, scheduler_args: dict[str, Any] | None, max_steps: int | None) -> Any:
    if scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # stop_last_trials=False: a trial that reaches max_t ends by itself, with its Train run's own teardown.
    args = {"max_t": max_steps or 10**6, "stop_last_trials": False, **(scheduler_args or {})}
    return ASHAScheduler(time_attr="step", **args)


# ---------------------------------------------------------------- the search space


def _param_space(base_values: dict[str, Any], space: dict[str, dict[str, Any]], search: str, experiment: str) -> dict[str, Any]:
    """Tune's ``param_space``: the base config, experiment path and variant bundles, plus one entry per axis."""
    check_space(space)
    for key, spec in space.items():
        if next(iter(spec)) != "variants" and key in PATH_KEYS:
            space[key] = {k: _absolute_path_values(v) for k, v in spec.items()}
    variants = {k: s["variants"] for k, s in space.items() if "variants" in s}
    _check_combinations(base_values, space, variants)
    param_space = {BASE_KEY: base_values, EXPERIMENT_KEY: experiment, VARIANTS_KEY: variants}
    param_space.update({k: to_tune(s, search) for k, s in space.items()})
    return param_space


def _check_combinations(base: dict[str, Any], space: dict[str, dict[str, Any]], variants: dict[str, Any]) -> None:
    """Build the config of every discrete combination (continuous keys at their lower bound) before any trial
    starts, so a bad key or value fails now and not in the middle of the sweep."""
    axes = {k: (list(a) if kind == "variants" else a if kind in DISCRETE else [a] if kind == "value" else [a[0]])
            for k, s in space.items() for kind, a in s.items()}
    combos = itertools.product(*axes.values())
    if np.prod([len(v) for v in axes.values()], dtype=float) > _MAX_CHECKED_COMBOS:
        combos = ([v[0] if k != key else x for k, v in axes.items()] for key in axes for x in axes[key])
    for combo in combos:
        build_trial_config(base, dict(zip(axes, combo, strict=True)), variants, where="search space")


def _absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """Relative paths that exist here become absolute: trials run in their own working directories."""
    for key in PATH_KEYS:
        section, leaf = key.split(".")
        v = (values.get(section) or {}).get(leaf)
        if isinstance(v, str) and not is_remote(v) and not Path(v).is_absolute() and (Path(v).exists() or leaf == "storage_path"):
            values[section][leaf] = str(Path(v).expanduser().resolve())
    return values


def _absolute_path_values(arg: Any) -> Any:
    if isinstance(arg, list):
        return [_absolute_path_values(v) for v in arg]
    return str(Path(arg).resolve()) if isinstance(arg, str) and not is_remote(arg) and Path(arg).exists() else arg
