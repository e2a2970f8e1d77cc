"""Figure helpers every report shares: a figure on the Agg canvas (no pyplot, so headless, in Ray
workers and threads alike) and a PNG writer."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(ncols: int = 1, width: float = 6.0, height: float = 4.5) -> Figure:
    """A Figure bound to an Agg canvas (so ``savefig`` needs no pyplot or display)."""
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path
