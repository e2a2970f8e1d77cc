"""Benchmark shim: same as ``sparsepo bench vs_trl`` (``sparsepo/bench/vs_trl.py``)."""

import sys

from sparsepo.bench.vs_trl import main

if __name__ == "__main__":
    sys.exit(main())
