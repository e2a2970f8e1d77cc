"""Benchmark shim: same as ``sparsepo bench profile_step`` (``sparsepo/bench/profile_step.py``); a bad setting is one error line."""

import sys

from sparsepo.bench.profile_step import main
from sparsepo.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(lambda _: main(), None))
