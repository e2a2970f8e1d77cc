"""What the step benchmarks share: one optimizer step of a preference model, as the trainer takes it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def busy_neighbours(count: int, seconds: float = 600.0) -> Iterator[None]:
    """``count`` busy-looping processes for the duration of the block (other jobs on a shared machine); each
    also stops by itself after ``seconds``, so none outlives a test or benchmark that was killed. Each runs in
    its own session, as another job would: with the kernel's autogroup scheduling, neighbours sharing the
    caller's session would only compete with the caller's own session for the CPU."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", loop], start_new_session=True) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
