"""Benchmark shim: same as ``sparsepo bench profile_step`` (``sparsepo/bench/profile_step.py``)."""

import sys

from sparsepo.bench.profile_step import main

if __name__ == "__main__":
    sys.exit(main())
