"""The optimizer of a training run: AdamW over the policy's and the mask networks' parameter groups, its kernel
(``optim.adamw``), and the cosine learning-rate schedule with linear warm-up."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch
from torch.optim.lr_scheduler import LambdaLR

from sparsepo.config.schema import TrainConfig
from sparsepo.objectives.masks import decay_groups

if TYPE_CHECKING:
    from sparsepo.training.preference_model import PreferenceModel


def build_optimizer(cfg: TrainConfig, model: PreferenceModel) -> torch.optim.AdamW:
    """AdamW: the policy's trainable parameters at ``optim.weight_decay``; mask Linear weights at ``mask.weight_decay``,
    the mask networks at their own ``mask.lr`` (``null``: ``optim.lr``)."""
    groups = [
        {"params": [p for p in model.policy.parameters() if p.requires_grad], "weight_decay": cfg.optim.weight_decay, "name": "policy"}
    ]
    if model.masks is not None:
        groups += decay_groups(model.masks, cfg.mask.weight_decay, cfg.mask.lr)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), **adamw_kernel(cfg.optim.adamw))


def _cosine_factor(step: int, *, warmup: int, total: int) -> float:
    # transformers' get_cosine_schedule_with_warmup (half a cycle), the same float operations
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> LambdaLR:
    """Linear warm-up over ``warmup`` steps, then a cosine decay to 0 at ``total`` steps: the factors (and the
    ``state_dict``) of transformers' ``get_cosine_schedule_with_warmup``, without importing
    ``transformers.optimization``, which loads peft, bitsandbytes and Inductor (1.5-1.8 CPU-s of the driver's
    start-up; in a Train worker peft and bitsandbytes, ~0.75 CPU-s)."""
    return LambdaLR(optimizer, functools.partial(_cosine_factor, warmup=warmup, total=total))


def adamw_name(setting: str) -> str:
    """``optim.adamw`` -> the kernel it runs (auto: fused, for CPU and CUDA float parameters since torch 2.4)."""
    return "fused" if setting == "auto" else setting


def adamw_kernel(setting: str) -> dict[str, bool]:
    """``optim.adamw`` -> AdamW's keyword argument selecting the kernel."""
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}[adamw_name(setting)]
