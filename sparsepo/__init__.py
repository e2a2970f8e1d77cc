"""sparsepo: token-level preference optimisation (SparsePO and baselines) on Ray.

Importing it changes nothing in the process; the command line (``sparsepo.cli.main``) bounds OpenMP spin-waiting
for itself and its Ray workers (``sparsepo.envvars.bound_omp_spin``).
"""

__version__ = "0.1.0"
