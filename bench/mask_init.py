"""Benchmark shim: same as ``sparsepo bench mask_init`` (``sparsepo/bench/mask_init.py``)."""

import sys

from sparsepo.bench.mask_init import main

if __name__ == "__main__":
    sys.exit(main())
