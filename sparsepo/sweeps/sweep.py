"""Ray Tune sweep over a training config: every trial is a Ray Train run (library: ``sparsepo.sweeps.tuning``).

    sparsepo sweep --config configs/smoke/sparsepo.yaml --space tune/spaces/beta.yaml \\
        run.evaluator=sparsepo.evaluation.sentiment:SentimentEvaluator run.eval_every=4 [--metric eval/reward --mode max]

Trials are ranked by an evaluation metric (default ``eval/reward``, maximised): training loss is no ranking (a
larger beta always lowers it). Multi-objective (Optuna): ``--search optuna --metric eval/reward eval/kl --mode max
min``. After a crash, run the same command with ``--resume`` and the same ``--name``: finished trials are kept, the
others continue. Prints the best trial (the Pareto front for several metrics) and writes ``results.csv`` (one row
per trial and reported step) into the experiment folder.
"""

from __future__ import annotations

import argparse
import sys

from sparsepo.config.typed import ConfigError  # not sparsepo.config.schema: that loads torch before --help


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo sweep")
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    d = "(default: %(default)s)"
    ap.add_argument("--config", help="base training config (YAML); defaults apply when omitted")
    ap.add_argument("--space", help="search space YAML (see tune/spaces/); not needed with --resume")
    ap.add_argument("--search", default="grid", choices=["grid", "random", "optuna"], help=d)
    ap.add_argument("--num-samples", type=int, default=1, help=f"grid: repeats of the grid; else: trials {d}")
    ap.add_argument("--metric", nargs="+", default=["eval/reward"], help=f"metric(s) to rank trials by {d}")
    ap.add_argument("--mode", nargs="+", default=["max"], choices=["min", "max"], help=f"one per metric {d}")
    ap.add_argument("--scheduler", choices=["asha"], help="early stopping of weak trials on --metric")
    ap.add_argument("--grace-period", type=int, help="asha: steps every trial runs before it may be stopped")
    ap.add_argument("--max-concurrent-trials", type=int, help="default: whole trials the cluster holds")
    ap.add_argument("--driver-cpus", type=float, default=1.0, help=f"CPUs reserved for each trial's driver {d}")
    ap.add_argument("--storage-path", help="experiment root (folder or s3://...); default: the config's run.storage_path")
    ap.add_argument("--name", help="experiment name (required with --resume)")
    ap.add_argument("--resume", action="store_true", help="continue the interrupted experiment --name")
    ap.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard event files")
    ap.add_argument("--mlflow", action="store_true", help="also log to MLflow (needs mlflow)")
    ap.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (needs wandb)")
    ap.add_argument("--num-cpus", type=int, help="start a local Ray instance with this many CPUs")
    ap.add_argument("--check", action="store_true", help="validate config, space, models and data; start nothing")
    ap.add_argument("overrides", nargs="*", help="base config overrides, e.g. model.name=tiny-llama optim.max_steps=4")
    return ap


def check_ranking(base, metrics: list[str], modes: list[str]) -> None:  # noqa: ANN001 - TrainConfig
    """Metrics and modes pair up, and eval/* metrics come from an evaluator the base config runs."""
    if len(metrics) != len(modes):
        raise ConfigError(f"--mode: one mode per --metric ({len(metrics)} metrics, {len(modes)} modes)")
    if any(m.startswith("eval/") for m in metrics) and not (base.run.evaluator and base.run.eval_every):
        raise ConfigError(
            f"--metric {' '.join(metrics)}: trials are ranked by an evaluation metric, but the base config runs no "
            "evaluator; set run.evaluator=<module:factory> and run.eval_every=N (e.g. "
            "sparsepo.evaluation.sentiment:SentimentEvaluator), or name a training metric with --metric"
        )


def run(args: argparse.Namespace) -> int:
    """The ``sweep`` command on parsed ``args``."""
    from sparsepo.config.schema import load_config

    if not args.resume and not args.space:
        raise ConfigError("--space: a search space is required (unless --resume)")
    base = load_config(args.config, args.overrides)
    check_ranking(base, args.metric, args.mode)
    from sparsepo.sweeps.search_space import check_space, load_space

    if args.space:
        check_space(load_space(args.space))
    from sparsepo.config.preflight import preflight

    found = preflight(base, check_name=False)  # models and data, before Ray starts
    print(f"[sparsepo] sweep of {base.method}: {found.data_report}", flush=True)
    if args.check:
        print("[sparsepo] check passed: config, search space, models and data are valid", flush=True)
        return 0
    return _sweep(args, base)


def _sweep(args: argparse.Namespace, base) -> int:  # noqa: ANN001 - TrainConfig
    import ray

    from sparsepo.logs import quiet_driver
    from sparsepo.sweeps.tuning import best_results, run_sweep, save_results, trial_params

    metric = args.metric if len(args.metric) > 1 else args.metric[0]
    mode = args.mode if len(args.mode) > 1 else args.mode[0]
    quiet_driver()
    if args.num_cpus is not None:
        ray.init(num_cpus=args.num_cpus)
    grid = run_sweep(
        base, args.space or {}, search=args.search, num_samples=args.num_samples, metric=metric, mode=mode,
        scheduler=args.scheduler, scheduler_args={"grace_period": args.grace_period} if args.grace_period else None,
        max_concurrent_trials=args.max_concurrent_trials, driver_cpus=args.driver_cpus,
        storage_path=args.storage_path, name=args.name, resume=args.resume, tensorboard=not args.no_tensorboard,
        mlflow=args.mlflow, wandb=args.wandb,
    )
    table = save_results(grid)
    best = best_results(grid, metric, mode) if grid.num_terminated else []
    print(f"{len(grid)} trials ({grid.num_errors} errored); results table: {table}")
    print("Pareto front:" if len(args.metric) > 1 else "best trial:")
    for r in best:
        shown = " ".join(f"{m}={r.metrics.get(m)}" for m in args.metric)
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
