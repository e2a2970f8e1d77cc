"""What a sweep's trials hold of the cluster: one trial's resources (its driver plus its Train workers), the
CPUs per Train worker when the config leaves them unset, and how many trials run at once."""

from __future__ import annotations

from typing import Any


def trial_demand(base: dict[str, Any], space: dict[str, dict[str, Any]], driver_cpus: float) -> dict[str, float]:
    """Most resources one trial may hold: its driver plus its Train workers (ScalingConfig as make_trainer sets)."""
    workers, cpus = max(_run_values(base, space, "num_workers")), max(_run_values(base, space, "cpus_per_worker"))
    gpu = [bool(v) for v in _run_values(base, space, "use_gpu")]
    return {"CPU": driver_cpus + (workers * cpus if not all(gpu) else 0.0), "GPU": float(workers) if any(gpu) else 0.0}


def split_trial_cpus(
    base: dict[str, Any], space: dict[str, dict[str, Any]], driver_cpus: float, concurrent: int | None
) -> float:
    """``run.cpus_per_worker`` when the config leaves it unset: the cluster's CPUs split between ``concurrent``
    trials (default: as many as fit at about one core per worker), then between each trial's workers."""
    from sparsepo.training.hardware import cluster_cpus, split_cpus

    workers = max(_run_values(base, space, "num_workers"))
    total, _ = cluster_cpus()
    concurrent = concurrent or max(1, round(total / (driver_cpus + workers)))
    return split_cpus(total, concurrent, workers, driver_cpus)


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
