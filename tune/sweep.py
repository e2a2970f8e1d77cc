"""Ray Tune sweep over a training config; same as ``sparsepo sweep`` (see ``sparsepo/sweeps/sweep.py``)."""

import sys

from sparsepo.sweeps.sweep import main

if __name__ == "__main__":
    sys.exit(main())
