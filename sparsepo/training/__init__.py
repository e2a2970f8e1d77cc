"""The training runtime on Ray Train: the worker loop, forward passes, packing, checkpoints, models."""
