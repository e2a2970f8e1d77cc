"""Process environment: variables set for the duration of a block (libraries that read them at start-up: vLLM,
Tune) and the OpenMP spin bound the command line applies."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def temporary_env(**values: str) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` inside the block; restore (or remove) each one afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bound_omp_spin() -> None:
    """Idle threads of torch's OpenMP pool spin at most 10,000 iterations before they sleep (libgomp's default is
    300,000), in this process and every child it starts (local Ray workers included), unless the user set
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``. A process whose threads share cores with other busy processes (a
    shared CI box, a laptop running other jobs) otherwise burns its time slices spinning: `sparsepo bench generate
    --omp sparsepo libgomp passive` (HF sampling of SmolLM2, 2-core machine) beside two busy processes 35.5 / 17.2 /
    36.7 tokens/s, idle 72.6 / 73.7 / 65.8. The command line calls it before torch loads (libgomp reads it then)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "10000"
