"""What a training step reports: metrics moved to the host once, averaged or summed over workers, and rank 0's
progress line."""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist

log = logging.getLogger("sparsepo.training.trainer")  # the trainer's logger: one name for the run's lines


def mean_over_workers(metrics: dict[str, float], world: int) -> dict[str, float]:
    """Each metric averaged over the ``world`` workers (an all-reduce of one float64 vector; a no-op alone)."""
    if world == 1:
        return metrics
    keys = sorted(metrics)
    t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


def to_host(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalar device tensors as Python floats, in one device-to-host copy (one sync, not one per value)."""
    keys = list(values)
    flat = torch.stack([values[k].reshape(()).to(torch.float64) for k in keys]).tolist() if keys else []
    return dict(zip(keys, flat, strict=True))


def sum_over_workers(value: float, world: int) -> float:
    """``value`` summed over the ``world`` workers (e.g. tokens per logging window)."""
    t = torch.tensor([value], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(t)
    return float(t)


_SHOWN = {"loss": "loss", "rewards/accuracy": "acc", "rewards/margin": "margin", "kl/chosen": "kl_w",
          "mask/reward/chosen/sparsity": "sparsity_u", "eval/reward": "reward", "eval/kl": "eval_kl"}


def progress_line(step: int, total: int, m: dict[str, float], window: list[float]) -> None:
    """Log rank 0's progress line: the headline metrics, tokens/s and the ETA from the last 20 step times (s)."""
    per_step = sum(window[-20:]) / len(window[-20:])
    eta = per_step * (total - step)
    shown = " ".join(f"{short}={m[k]:.4g}" for k, short in _SHOWN.items() if k in m)
    log.info(f"[sparsepo] step {step}/{total} {shown} tok/s={m['tokens_per_s']:.0f} eta={eta:.0f}s")
