"""``python -m sparsepo.assets prepare|path ...``: the same as ``sparsepo assets``."""

import sys

from sparsepo.assets import main

sys.exit(main())
