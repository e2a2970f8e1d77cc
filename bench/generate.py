"""Benchmark shim: same as ``sparsepo bench generate`` (``sparsepo/bench/generate.py``)."""

import sys

from sparsepo.bench.generate import main

if __name__ == "__main__":
    sys.exit(main())
