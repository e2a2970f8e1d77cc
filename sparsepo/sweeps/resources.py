"""What a sweep's trials hold of the cluster: one trial's resources (its driver plus its Train workers), the
CPUs per Train worker when the config leaves them unset, and how many trials run at once.

A trial in Ray Train's local mode (``run.num_workers=0``) trains in its own actor: one process that holds what one
Train worker would (:func:`trial_resources`)."""

from __future__ import annotations

from typing import Any

from sparsepo.config.schema import train_processes


def trial_demand(base: dict[str, Any], space: dict[str, dict[str, Any]], driver_cpus: float) -> dict[str, float]:
    """Most resources one trial may hold: its driver plus its Train workers (ScalingConfig as make_trainer sets),
    or in local mode its actor, which holds one worker's share itself."""
    workers = train_processes(max(_run_values(base, space, "num_workers")))
    cpus = max(_run_values(base, space, "cpus_per_worker"))
    gpu = [bool(v) for v in _run_values(base, space, "use_gpu")]
    return {"CPU": driver_cpus + (workers * cpus if not all(gpu) else 0.0), "GPU": float(workers) if any(gpu) else 0.0}


def split_trial_cpus(
    base: dict[str, Any], space: dict[str, dict[str, Any]], driver_cpus: float, concurrent: int | None
) -> float:
    """``run.cpus_per_worker`` when the config leaves it unset: the cluster's CPUs split between ``concurrent``
    trials (default: as many as fit at about one core per worker), then between each trial's workers."""
    from sparsepo.training.hardware import cluster_cpus, split_cpus

    workers = train_processes(max(_run_values(base, space, "num_workers")))
    total, _ = cluster_cpus()
    concurrent = concurrent or max(1, round(total / (driver_cpus + workers)))
    return split_cpus(total, concurrent, workers, driver_cpus)


def trial_resources(config: dict[str, Any], driver_cpus: float) -> dict[str, float]:
    """What one trial's actor reserves (``tune.with_resources`` calls this with the trial's config): its driver's
    CPUs, its Train workers reserving their own; in local mode (``run.num_workers=0``) the loop runs in the actor,
    which then also holds the training's share: ``run.cpus_per_worker`` CPUs, or a GPU with ``run.use_gpu`` (as
    :func:`trial_demand` counts a GPU worker)."""
    from sparsepo.sweeps.trials import BASE_KEY, VARIANTS_KEY, build_trial_config, trial_params

    try:
        run = build_trial_config(config[BASE_KEY], trial_params(config), config.get(VARIANTS_KEY)).run
    except ValueError:  # the trial fails with this error in its trainable: no resources of its own to reserve
        return {"CPU": driver_cpus}
    if run.num_workers != 0:
        return {"CPU": driver_cpus}
    if run.use_gpu:
        return {"CPU": driver_cpus, "GPU": 1.0}
    return {"CPU": driver_cpus + (run.cpus_per_worker or 1.0)}


def default_max_concurrent(per_trial: dict[str, float], cluster: dict[str, float]) -> int:
    """How many trials the cluster runs at once: min over resources of cluster // per trial (at least 1)."""
    limits = [int(cluster.get(k, 0.0) // v + 1e-9) for k, v in per_trial.items() if v > 0]
    return max(1, min(limits, default=1))


def _run_values(base: dict[str, Any], space: dict[str, dict[str, Any]], leaf: str) -> list[Any]:
    """The values ``run.<leaf>`` takes in the sweep: its axis in ``space`` (a constant or a list), else the base
    config's value."""
    spec = space.get(f"run.{leaf}", {"value": base["run"][leaf]})
    kind, arg = next(iter(spec.items()))
    return [arg] if kind == "value" else list(arg)
