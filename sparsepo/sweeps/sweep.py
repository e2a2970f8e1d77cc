"""Ray Tune sweep over a training config: every trial is a Ray Train run (library: ``sparsepo.sweeps.tuning``).

    sparsepo sweep --config configs/smoke/sparsepo.yaml --space tune/spaces/beta.yaml \\
        run.evaluator=sparsepo.evaluation.sentiment:SentimentEvaluator run.eval_every=4 [--metric eval/reward --mode max]

Trials are ranked by an evaluation metric (default ``eval/reward``, maximised): training loss is no ranking (a
larger beta always lowers it). Multi-objective (Optuna): ``--search optuna --metric eval/reward eval/kl --mode max
min``. After a crash, run the same command with ``--resume`` and the same ``--name``: finished trials are kept, the
others continue. Prints the best trial (the Pareto front for several metrics) and writes ``results.csv`` (one row
per trial and reported step) into the experiment folder.

The flags are the fields of :class:`SweepSettings`; a bad value or combination is refused in one line before torch
loads, the base config, ranking and search space next, then models and data (``--check`` stops there), all before
Ray starts. ``--metric`` takes every word after it: write ``key=value`` overrides before it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Literal

# sparsepo.config.typed, not sparsepo.config.schema: that loads torch before --help
from sparsepo.config.flags import add_dataclass_flags, dataclass_from_args
from sparsepo.config.typed import ConfigError, spec


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """The ``sweep`` command's settings, one flag each; checked (types, ranges, combinations, files) before the
    base config is read, any model resolves or Ray starts."""

    config: str | None = None  # base training config (YAML); defaults apply when omitted
    space: str | None = None  # search space YAML (see tune/spaces/); not needed with --resume
    search: Literal["grid", "random", "optuna"] = "grid"  # search algorithm
    num_samples: int = spec(1, ge=1, help="grid: repeats of the grid; else: trials")
    metric: tuple[str, ...] = ("eval/reward",)  # metric(s) to rank trials by
    mode: tuple[Literal["min", "max"], ...] = ("max",)  # one per metric
    scheduler: Literal["asha"] | None = None  # early stopping of weak trials on --metric
    grace_period: int | None = spec(None, ge=1, help="asha: steps every trial runs before it may be stopped")
    max_concurrent_trials: int | None = spec(None, ge=1, help="trials at once (default: whole trials the cluster holds)")
    driver_cpus: float = spec(1.0, gt=0, help="CPUs reserved for each trial's driver")
    storage_path: str | None = None  # experiment root (folder or s3://...); default: the config's run.storage_path
    name: str | None = None  # experiment name (required with --resume)
    resume: bool = False  # continue the interrupted experiment --name
    tensorboard: bool = True  # write TensorBoard event files (--no-tensorboard: skip them)
    mlflow: bool = False  # also log to MLflow (needs mlflow)
    wandb: bool = False  # also log to Weights & Biases (needs wandb)
    num_cpus: int | None = spec(None, ge=1, help="start a local Ray instance with this many CPUs")
    check: bool = False  # validate config, space, models and data; start nothing
    overrides: tuple[str, ...] = ()  # base config overrides, e.g. model.name=tiny-llama optim.max_steps=4

    def __post_init__(self) -> None:
        """The checks that span flags, and the files they name; one ConfigError line each."""
        if not self.metric:
            raise ConfigError("--metric: name at least one metric")
        if words := [m for m in self.metric if "=" in m]:  # --metric takes every word after it
            raise ConfigError(f"--metric {words[0]!r}: looks like a config override; put overrides before --metric")
        if len(self.mode) != len(self.metric):
            raise ConfigError(f"--mode: one mode per --metric ({len(self.metric)} metrics, {len(self.mode)} modes)")
        if len(self.metric) > 1 and (self.search != "optuna" or self.scheduler is not None):
            raise ConfigError("--metric: several metrics (multi-objective) need --search optuna and no --scheduler")
        if self.grace_period is not None and self.scheduler != "asha":
            raise ConfigError("--grace-period: only with --scheduler asha (it delays early stopping)")
        if self.resume and self.name is None:
            raise ConfigError("--resume needs the --name of the experiment to continue")
        if not self.resume and not self.space:
            raise ConfigError("--space: a search space is required (unless --resume)")
        for flag, path in (("--config", self.config), ("--space", self.space)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{flag}: file not found: {path}")
        # the overrides are checked by load_config (torch-free) as the first step of sweep()


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo sweep")
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    add_dataclass_flags(ap, SweepSettings, skip=("overrides",))
    ap.add_argument("overrides", nargs="*", help="base config overrides, e.g. model.name=tiny-llama optim.max_steps=4")
    return ap


def settings_from_args(args: argparse.Namespace) -> SweepSettings:
    """Parsed flags -> validated settings (defaults for flags not given)."""
    return dataclass_from_args(SweepSettings, args, overrides=list(args.overrides))


def check_ranking(base, metrics: list[str]) -> None:  # noqa: ANN001 - TrainConfig
    """eval/* metrics come from an evaluator the base config runs (one mode per metric: SweepSettings)."""
    if any(m.startswith("eval/") for m in metrics) and not (base.run.evaluator and base.run.eval_every):
        raise ConfigError(
            f"--metric {' '.join(metrics)}: trials are ranked by an evaluation metric, but the base config runs no "
            "evaluator; set run.evaluator=<module:factory> and run.eval_every=N (e.g. "
            "sparsepo.evaluation.sentiment:SentimentEvaluator), or name a training metric with --metric"
        )


def run(args: argparse.Namespace) -> int:
    """The ``sweep`` command on parsed ``args``."""
    return sweep(settings_from_args(args))


def sweep(settings: SweepSettings) -> int:
    """Check the base config, ranking, search space, models and data, then (unless ``settings.check``) run."""
    from sparsepo.config.schema import load_config

    base = load_config(settings.config, list(settings.overrides))
    check_ranking(base, list(settings.metric))
    from sparsepo.sweeps.search_space import check_space, load_space

    if settings.space:
        check_space(load_space(settings.space))
    from sparsepo.config.preflight import preflight

    found = preflight(base, check_name=False)  # models and data, before Ray starts
    print(f"[sparsepo] sweep of {base.method}: {found.data_report}", flush=True)
    if settings.check:
        print("[sparsepo] check passed: config, search space, models and data are valid", flush=True)
        return 0
    return _sweep(settings, base)


def _sweep(s: SweepSettings, base) -> int:  # noqa: ANN001 - TrainConfig
    import ray

    from sparsepo.logs import quiet_driver
    from sparsepo.sweeps.tuning import best_results, run_sweep, save_results, trial_params

    metric = list(s.metric) if len(s.metric) > 1 else s.metric[0]
    mode = list(s.mode) if len(s.mode) > 1 else s.mode[0]
    quiet_driver()
    if s.num_cpus is not None:
        ray.init(num_cpus=s.num_cpus)
    grid = run_sweep(
        base, s.space or {}, search=s.search, num_samples=s.num_samples, metric=metric, mode=mode,
        scheduler=s.scheduler, scheduler_args={"grace_period": s.grace_period} if s.grace_period else None,
        max_concurrent_trials=s.max_concurrent_trials, driver_cpus=s.driver_cpus,
        storage_path=s.storage_path, name=s.name, resume=s.resume, tensorboard=s.tensorboard,
        mlflow=s.mlflow, wandb=s.wandb,
    )
    table = save_results(grid)
    best = best_results(grid, metric, mode) if grid.num_terminated else []
    print(f"{len(grid)} trials ({grid.num_errors} errored); results table: {table}")
    print("Pareto front:" if len(s.metric) > 1 else "best trial:")
    for r in best:
        shown = " ".join(f"{m}={r.metrics.get(m)}" for m in s.metric)
        print(f"  {r.metrics.get('trial_id')} {trial_params(r.config)} {shown} checkpoint={r.metrics.get('checkpoint_path')}")
    return 1 if grid.num_errors else 0


def main(argv: list[str] | None = None) -> int:
    from sparsepo.cli import parse
    from sparsepo.errors import run_cli

    return run_cli(run, parse(build_parser(), sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    from sparsepo.envvars import bound_omp_spin

    bound_omp_spin()  # for the Ray workers this starts (torch is already loaded here)
    sys.exit(main())
