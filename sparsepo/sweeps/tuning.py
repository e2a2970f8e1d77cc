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
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparsepo.config.schema import TrainConfig, from_dict
from sparsepo.envvars import temporary_env
from sparsepo.io import fs_uri, is_remote, iter_jsonl, resolve_storage
from sparsepo.objectives.losses import get_loss
from sparsepo.sweeps.search_space import DISCRETE, check_key, check_space, load_space, to_tune
from sparsepo.training.cluster import pin_train_coordinator

BASE_KEY, EXPERIMENT_KEY, VARIANTS_KEY = "_base", "_experiment", "_variants"  # reserved trial-config keys
SEARCHES = ("grid", "random", "optuna")
PATH_KEYS = ("model.name", "model.ref", "data.path", "run.storage_path", "run.resume_from")
_MAX_CHECKED_COMBOS = 4096


# ---------------------------------------------------------------- trial configs


def build_trial_config(base: dict[str, Any], params: dict[str, Any], variants: dict[str, Any] | None = None,
                       where: str = "trial") -> TrainConfig:
    """``base`` (a ``TrainConfig.to_dict()``) updated by ``params`` (dotted keys, or variant axis -> name)."""
    variants = variants or {}
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if key in variants:
            if value not in variants[key]:
                raise ValueError(f"{where}: {key}={value!r} is not one of the variants {sorted(variants[key])}")
            flat.update(variants[key][value])
        else:
            flat[key] = value
    values = copy.deepcopy(base)
    if "method" in flat and flat["method"] != values.get("method"):
        # The base's loss entries are the base method's hyper-parameters, not the trial method's.
        takes = get_loss(str(flat["method"])).defaults
        values["loss"] = {k: v for k, v in (values.get("loss") or {}).items() if k in takes}
    for key, value in flat.items():
        check_key(key, where)
        node = values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    label = f"{where} ({', '.join(f'{k}={v}' for k, v in params.items())})"
    try:
        return from_dict(values, where=label)
    except ValueError as err:  # loss-name errors come without a location
        raise ValueError(str(err) if label in str(err) else f"{label}: {err}") from None


def trial_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: fit the trial's Ray Train run, reporting every metric to Tune.

    ``config`` holds the base config dict (``_base``), the experiment path (``_experiment``), variant bundles
    (``_variants``) and the trial's params as dotted keys. The Train run is stored at
    ``<experiment>/<trial dir>/train``: a trial restarted after a crash (or ``Tuner.restore``) refits the same
    run, which Ray Train resumes from its latest checkpoint. Tune restarts such a trial's progress files from
    scratch (it holds no Tune checkpoint), so the steps saved in that checkpoint are reported again first.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from sparsepo.training.train import make_trainer

    params = trial_params(config)
    cfg = build_trial_config(config[BASE_KEY], params, config.get(VARIANTS_KEY))
    trial_dir = Path(tune.get_context().get_trial_dir()).name
    values = cfg.to_dict()
    values["run"].update(storage_path=f"{config[EXPERIMENT_KEY]}/{trial_dir}", name="train")
    done = saved_history(f"{values['run']['storage_path']}/train")
    for metrics in done:
        tune.report(metrics)
    if done and cfg.optim.max_steps is not None and done[-1].get("step") == cfg.optim.max_steps:
        return  # the run had finished; only Tune had not heard of its last steps
    make_trainer(from_dict(values), callbacks=[TuneReportCallback()]).fit()


def saved_history(train_run: str) -> list[dict[str, float]]:
    """Reported metrics kept in the last complete checkpoint of a Train run folder (local or URI); [] if none."""
    import pyarrow.fs

    from sparsepo.training.checkpoint import HISTORY_FILE, complete_checkpoints

    found = complete_checkpoints(train_run)
    if not found:
        return []
    fs, path = pyarrow.fs.FileSystem.from_uri(found[-1][1])
    with fs.open_input_stream(f"{path}/{HISTORY_FILE}") as f:
        return [r for _, r in iter_jsonl(f.readall().decode(), found[-1][1])]


def trial_params(config: dict[str, Any], expand: bool = False) -> dict[str, Any]:
    """The trial's own params (sampled values and space constants) from a trial config; ``expand`` adds the
    config keys of each chosen variant (``mask_kind=mapo`` -> also ``method=mapo``...)."""
    params = {k: v for k, v in config.items() if not k.startswith("_")}
    variants = config.get(VARIANTS_KEY) or {}
    extra = {k: v for axis, name in params.items() if axis in variants for k, v in variants[axis].get(name, {}).items()}
    return {**params, **extra} if expand else params


def _absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """Relative paths that exist here become absolute: trials run in their own working directories."""
    for key in PATH_KEYS:
        section, leaf = key.split(".")
        v = (values.get(section) or {}).get(leaf)
        if isinstance(v, str) and not is_remote(v) and not Path(v).is_absolute() and (Path(v).exists() or leaf == "storage_path"):
            values[section][leaf] = str(Path(v).expanduser().resolve())
    return values


# ---------------------------------------------------------------- sweeps


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
    from ray import tune

    metrics, modes = _check_sweep_args(search, metric, mode, scheduler, resume, name)
    multi = len(metrics) > 1 or not isinstance(metric, str)
    base_values = _absolute_paths(base.to_dict())
    storage = resolve_storage(storage_path or base_values["run"]["storage_path"])
    name = name or f"sweep-{base.method}-{time.strftime('%Y%m%d-%H%M%S')}"
    experiment = f"{storage.rstrip('/')}/{name}"
    trainable = tune.with_resources(trial_trainable, {"CPU": driver_cpus})
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}  # we pass the loggers we want ourselves
    if base.run.evaluator:  # eval metrics come only with evaluator steps, not in every report
        env["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"

    if resume:
        tuner = _restored_tuner(experiment, trainable, list(callbacks))
    else:
        if tune.Tuner.can_restore(experiment):
            raise FileExistsError(f"{experiment} already holds a Tune experiment: pass resume=True or another name")
        sweep = {"search": search, "metrics": metrics, "modes": modes, "multi": multi, "num_samples": num_samples,
                 "scheduler": scheduler, "scheduler_args": scheduler_args, "driver_cpus": driver_cpus,
                 "max_concurrent_trials": max_concurrent_trials}
        loggers = [*_logger_callbacks(tensorboard, mlflow, wandb, name), *callbacks]
        tuner = _fresh_tuner(base, base_values, load_space(space), trainable, experiment, name, storage, loggers,
                             **sweep)
    pin_train_coordinator()
    with temporary_env(**env):
        return tuner.fit()


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
                 experiment: str, name: str, storage: str, callbacks: list[Any], *, search: str,
                 metrics: list[str], modes: list[str], multi: bool, num_samples: int, scheduler: str | None,
                 scheduler_args: dict[str, Any] | None, driver_cpus: float,
                 max_concurrent_trials: int | None):  # noqa: ANN202 - ray.tune.Tuner
    """A new Tuner over ``space``; CPUs per Train worker and concurrent trials default to what the cluster holds."""
    import ray
    from ray import tune

    param_space = _param_space(base_values, space, search, experiment)  # holds base_values itself
    if not ray.is_initialized():
        ray.init()
    if base_values["run"]["cpus_per_worker"] is None and "run.cpus_per_worker" not in space:
        base_values["run"]["cpus_per_worker"] = _split_trial_cpus(base_values, space, driver_cpus, max_concurrent_trials)
    if max_concurrent_trials is None:
        max_concurrent_trials = default_max_concurrent(_trial_demand(base_values, space, driver_cpus), ray.cluster_resources())
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=None if multi else metrics[0],
            mode=None if multi else modes[0],
            search_alg=_search_alg(search, metrics, modes, multi, base.run.seed),
            scheduler=_scheduler(scheduler, scheduler_args, base.optim.max_steps),
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent_trials,
            trial_dirname_creator=trial_dirname,
        ),
        # A trial whose node dies (its Train controller with it) restarts; its Train run resumes from its checkpoint.
        run_config=tune.RunConfig(name=name, storage_path=storage, callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=base.run.max_failures)),
    )


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


def _search_alg(search: str, metrics: list[str], modes: list[str], multi: bool, seed: int) -> Any:
    if search != "optuna":
        return None
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=metrics if multi else None, mode=modes if multi else None, seed=seed)


def _scheduler(scheduler: str | None, scheduler_args: dict[str, Any] | None, max_steps: int | None) -> Any:
    if scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # stop_last_trials=False: a trial that reaches max_t ends by itself, with its Train run's own teardown.
    args = {"max_t": max_steps or 10**6, "stop_last_trials": False, **(scheduler_args or {})}
    return ASHAScheduler(time_attr="step", **args)


def trial_dirname(trial: Any) -> str:
    """``trial_<id>_<param>=<value>,...``: the trial's own params only (searchers' default tags list the
    whole config, base included), cut to a safe length; the trial id keeps names unique."""
    params = ",".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial_params(trial.config).items())
    return re.sub(r"[^\w.=,+-]", "_", f"trial_{trial.trial_id}_{params}")[:120]


def _absolute_path_values(arg: Any) -> Any:
    if isinstance(arg, list):
        return [_absolute_path_values(v) for v in arg]
    return str(Path(arg).resolve()) if isinstance(arg, str) and not is_remote(arg) and Path(arg).exists() else arg


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


def _trial_demand(base: dict[str, Any], space: dict[str, dict[str, Any]], driver_cpus: float) -> dict[str, float]:
    """Most resources one trial may hold: its driver plus its Train workers (ScalingConfig as make_trainer sets)."""

    def values(key: str) -> list[Any]:
        spec = space.get(key, {"value": base["run"][key.split(".")[1]]})
        kind, arg = next(iter(spec.items()))
        return [arg] if kind == "value" else list(arg)

    workers, cpus = max(values("run.num_workers")), max(values("run.cpus_per_worker"))
    gpu = [bool(v) for v in values("run.use_gpu")]
    return {"CPU": driver_cpus + (workers * cpus if not all(gpu) else 0.0), "GPU": float(workers) if any(gpu) else 0.0}


def _split_trial_cpus(
    base: dict[str, Any], space: dict[str, dict[str, Any]], driver_cpus: float, concurrent: int | None
) -> float:
    """``run.cpus_per_worker`` when the config leaves it unset: the cluster's CPUs split between ``concurrent``
    trials (default: as many as fit at about one core per worker), then between each trial's workers."""
    from sparsepo.training.hardware import cluster_cpus, split_cpus

    spec = space.get("run.num_workers", {"value": base["run"]["num_workers"]})
    kind, arg = next(iter(spec.items()))
    workers = max([arg] if kind == "value" else list(arg))
    total, _ = cluster_cpus()
    concurrent = concurrent or max(1, round(total / (driver_cpus + workers)))
    return split_cpus(total, concurrent, workers, driver_cpus)


def default_max_concurrent(per_trial: dict[str, float], cluster: dict[str, float]) -> int:
    """How many trials the cluster runs at once: min over resources of cluster // per trial (at least 1)."""
    limits = [int(cluster.get(k, 0.0) // v + 1e-9) for k, v in per_trial.items() if v > 0]
    return max(1, min(limits, default=1))


def _logger_callbacks(tensorboard: bool, mlflow: bool | dict[str, Any], wandb: bool | dict[str, Any], name: str) -> list:
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


# ---------------------------------------------------------------- results


def results_frame(result_grid: Any) -> pd.DataFrame:
    """One row per (trial, reported step): ``trial_id``, the trial's params (variants also as their config
    keys), its metrics, ``error`` and ``trial_path``.

    Read from each trial's progress (``result.json``). A trial restarted after a crash may have reported a
    step twice; the later report is kept. A trial that failed before reporting keeps one row of params.
    """
    frames = []
    for result in result_grid:
        df = result.metrics_dataframe
        df = pd.DataFrame([{}]) if df is None or df.empty else df.drop(columns=[c for c in df if c.startswith("config/")])
        if "step" in df:
            df = df.drop_duplicates(subset="step", keep="last")
        trial_id = df["trial_id"].iloc[-1] if "trial_id" in df else Path(result.path).name
        head = {"trial_id": trial_id, **trial_params(result.config or _saved_config(result), expand=True)}
        df = df.drop(columns=[c for c in head if c in df]).reset_index(drop=True)
        for i, (k, v) in enumerate(head.items()):
            df.insert(i, k, [v] * len(df))
        df["error"] = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        df["trial_path"] = fs_uri(result.filesystem, result.path)  # Ray's path inside the filesystem has no scheme
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _saved_config(result: Any) -> dict[str, Any]:
    """The trial's config from its params.json (a trial that never reported has no config in its metrics)."""
    import json

    try:
        with result.filesystem.open_input_stream(f"{result.path}/params.json") as f:
            return json.loads(f.readall().decode())
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return {}


def best_results(result_grid: Any, metric: str | Sequence[str], mode: str | Sequence[str]) -> list[Any]:
    """The best trial for one metric, or the Pareto front (non-dominated last values) for a list of metrics."""
    if isinstance(metric, str):
        return [result_grid.get_best_result(metric=metric, mode=mode, scope="last")]
    metrics, signs = list(metric), np.array([1.0 if m == "min" else -1.0 for m in mode])
    done = [r for r in result_grid if r.error is None and all(np.isfinite(r.metrics.get(m, np.nan)) for m in metrics)]
    pts = np.array([[r.metrics[m] for m in metrics] for r in done], dtype=float).reshape(len(done), len(metrics)) * signs
    # p is dominated when some q is no worse on every objective and better on one (all minimised after signs).
    dominated = [any(np.all(q <= p) and np.any(q < p) for q in pts) for p in pts]
    return [r for r, d in zip(done, dominated, strict=True) if not d]


def save_results(result_grid: Any, frame: pd.DataFrame | None = None, filename: str = "results.csv") -> str:
    """Write ``frame`` (default: :func:`results_frame`) as CSV into the experiment folder, on whatever storage
    (local or URI) the experiment uses; returns the file's path on that storage."""
    frame = results_frame(result_grid) if frame is None else frame
    target = f"{result_grid.experiment_path.rstrip('/')}/{filename}"
    with result_grid.filesystem.open_output_stream(target) as f:
        f.write(frame.to_csv(index=False).encode())
    return target
