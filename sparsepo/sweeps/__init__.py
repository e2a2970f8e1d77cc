"""Ray Tune sweeps over training configs, and their search spaces."""
