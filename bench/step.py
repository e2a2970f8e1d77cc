"""Benchmark shim: same as ``sparsepo bench step`` (``sparsepo/bench/step.py``)."""

import sys

from sparsepo.bench.step import main

if __name__ == "__main__":
    sys.exit(main())
