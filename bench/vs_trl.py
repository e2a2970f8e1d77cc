"""Benchmark shim: same as ``sparsepo bench vs_trl`` (``sparsepo/bench/vs_trl.py``); a bad setting is one error line."""

import sys

from sparsepo.bench.vs_trl import main
from sparsepo.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(lambda _: main(), None))
