"""Benchmark shim: same as ``sparsepo bench gpu_check`` (``sparsepo/bench/gpu_check.py``)."""

import sys

from sparsepo.bench.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
