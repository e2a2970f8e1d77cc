"""Benchmark shim: same as ``sparsepo bench gpu_check`` (``sparsepo/bench/gpu_check.py``); a bad setting is one error line."""

import sys

from sparsepo.bench.gpu_check import main
from sparsepo.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(lambda _: main(), None))
