"""sparsepo: token-level preference optimisation (SparsePO and baselines) on Ray."""

__version__ = "0.1.0"
