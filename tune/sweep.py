"""Ray Tune sweep over a training config; same as ``sparsepo sweep`` (see ``sparsepo/sweep.py``)."""

import sys

from sparsepo.sweep import main

if __name__ == "__main__":
    sys.exit(main())
