"""Looking inside trained policies: per-token values, token heatmaps, shared figure helpers."""
