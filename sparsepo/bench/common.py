"""What the step benchmarks share: one optimizer step of a preference model, as the trainer takes it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch


def make_step(model: Any, ref: Any, opt: torch.optim.Optimizer, batch: dict, autocast: Any) -> Callable[[], None]:
    """A closure running forward (reference first, when there is one), backward and ``opt.step()`` on ``batch``."""

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast or contextlib.nullcontext():
            out = model(batch, ref(batch) if ref is not None else None)
            out.loss.backward()
        opt.step()

    return step
