"""sparsepo: token-level preference optimisation (SparsePO and baselines) on Ray."""

import os

# Idle threads of torch's OpenMP pool spin for at most 10,000 iterations before they sleep (libgomp's default is
# 300,000). A process whose threads share cores with other busy processes (a shared CI box, a laptop running
# other jobs) otherwise burns its time slices spinning. `sparsepo bench generate --omp sparsepo,libgomp,passive`
# (HF sampling of SmolLM2, 2-core machine): beside two busy processes 35.5 / 17.2 / 36.7 tokens/s, idle
# 72.6 / 73.7 / 65.8. Set before torch loads libgomp, so here; Ray workers inherit it; an OMP_WAIT_POLICY or
# GOMP_SPINCOUNT the user set wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

__version__ = "0.1.0"
