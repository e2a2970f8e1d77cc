"""Ray Tune sweep over a training config: every trial is a Ray Train run (see ``sparsepo.tuning``).

    python tune/sweep.py --config configs/smoke/sparsepo.yaml --space tune/spaces/beta.yaml \\
        [--search grid|random|optuna] [--num-samples N] [--metric loss] [--mode min] [--scheduler asha] \\
        [--storage-path runs] [--name NAME] [--resume] [key=value overrides]

Multi-objective (Optuna): ``--search optuna --metric eval/reward,eval/kl --mode max,min``. After a crash, run the
same command with ``--resume`` (and the same ``--name``): finished trials are kept, the others continue.
Prints the best trial (the Pareto front for several metrics) and writes ``results.csv`` (one row per trial and
reported step) into the experiment folder.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tune/sweep.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="base training config (YAML); defaults apply when omitted")
    ap.add_argument("--space", help="search space YAML (see tune/spaces/); not needed with --resume")
    ap.add_argument("--search", default="grid", choices=["grid", "random", "optuna"])
    ap.add_argument("--num-samples", type=int, default=1, help="grid: repeats of the grid; else: trials")
    ap.add_argument("--metric", default="loss", help="metric to optimise; comma-separated for several (optuna)")
    ap.add_argument("--mode", default="min", help="min or max, one per metric (comma-separated)")
    ap.add_argument("--scheduler", choices=["asha"], help="early stopping of weak trials on --metric")
    ap.add_argument("--grace-period", type=int, help="asha: steps every trial runs before it may be stopped")
    ap.add_argument("--max-concurrent-trials", type=int, help="default: whole trials the cluster holds")
    ap.add_argument("--driver-cpus", type=float, default=1.0, help="CPUs reserved for each trial's driver")
    ap.add_argument("--storage-path", help="experiment root (folder or s3://...); default: the config's run.storage_path")
    ap.add_argument("--name", help="experiment name (required with --resume)")
    ap.add_argument("--resume", action="store_true", help="continue the interrupted experiment --name")
    ap.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard event files")
    ap.add_argument("--mlflow", action="store_true", help="also log to MLflow (needs mlflow)")
    ap.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (needs wandb)")
    ap.add_argument("--num-cpus", type=int, help="start a local Ray instance with this many CPUs")
    ap.add_argument("overrides", nargs="*", help="base config overrides, e.g. model.name=tiny-llama optim.max_steps=4")
    args = ap.parse_args(argv)
    if not args.resume and not args.space:
        ap.error("--space is required (unless --resume)")

    import ray

    from sparsepo.config import load_config
    from sparsepo.tuning import best_results, run_sweep, save_results, trial_params

    base = load_config(args.config, args.overrides)
    metric = args.metric.split(",") if "," in args.metric else args.metric
    mode = args.mode.split(",") if "," in args.mode else args.mode
    if args.num_cpus is not None:
        ray.init(num_cpus=args.num_cpus)
    grid = run_sweep(
        base,
        args.space or {},
        search=args.search,
        num_samples=args.num_samples,
        metric=metric,
        mode=mode,
        scheduler=args.scheduler,
        scheduler_args={"grace_period": args.grace_period} if args.grace_period else None,
        max_concurrent_trials=args.max_concurrent_trials,
        driver_cpus=args.driver_cpus,
        storage_path=args.storage_path,
        name=args.name,
        resume=args.resume,
        tensorboard=not args.no_tensorboard,
        mlflow=args.mlflow,
        wandb=args.wandb,
    )
    table = save_results(grid)
    names = metric if isinstance(metric, list) else [metric]
    best = best_results(grid, metric, mode) if grid.num_terminated else []
    print(f"{len(grid)} trials ({grid.num_errors} errored); results table: {table}")
    print("Pareto front:" if isinstance(metric, list) else "best trial:")
    for r in best:
        shown = " ".join(f"{m}={r.metrics.get(m)}" for m in names)
        print(f"  {r.metrics.get('trial_id')} {trial_params(r.config)} {shown} checkpoint={r.metrics.get('checkpoint_path')}")
    return 1 if grid.num_errors else 0


if __name__ == "__main__":
    sys.exit(main())
