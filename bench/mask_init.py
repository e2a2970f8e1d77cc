"""Benchmark shim: same as ``sparsepo bench mask_init`` (``sparsepo/bench/mask_init.py``); a bad setting is one error line."""

import sys

from sparsepo.bench.mask_init import main
from sparsepo.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(lambda _: main(), None))
