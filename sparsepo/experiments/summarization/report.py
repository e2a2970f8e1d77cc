"""The summarisation experiment's outputs in the paper's layout: Figure 5 (each metric against the sampling
temperature, one line per method, 95% bootstrap CIs as error bars), its table, and ``report.md``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sparsepo.analysis.figures import new_figure, save_png
from sparsepo.evaluation.report import settings_markdown, to_markdown
from sparsepo.experiments.summarization.evaluation import FIGURE5_METRICS

_ARROW = {"ROUGE-L F1": "higher is better", "BERTScore F1": "higher is better", "self-BLEU": "lower = more diverse",
          "EDNA": "higher is better"}


def figure5(table: pd.DataFrame) -> Figure:
    """One panel per :data:`FIGURE5_METRICS` column of ``table`` (:func:`~.evaluation.figure5_table`): the
    metric against temperature, a line per method (methods in order of first appearance). A panel whose metric
    was not measured says so instead of plotting."""
    labels = list(FIGURE5_METRICS.values())
    fig = new_figure(ncols=len(labels), width=3.6, height=3.4)
    axes = fig.subplots(1, len(labels))
    methods = list(dict.fromkeys(table["Method"]))
    for ax, label in zip(axes, labels, strict=True):
        measured = table[table[label].notna()] if label in table else table[:0]
        for method in methods:
            rows = measured[measured["Method"] == method].sort_values("Temperature")
            if rows.empty:
                continue
            y = rows[label].to_numpy(dtype=float)
            low, high = rows[f"{label} CI low"].to_numpy(dtype=float), rows[f"{label} CI high"].to_numpy(dtype=float)
            err = np.nan_to_num(np.maximum(0.0, [y - low, high - y]))
            ax.errorbar(rows["Temperature"].to_numpy(dtype=float), y, yerr=err, marker="o", ms=4, capsize=2,
                        label=str(method))
        if measured.empty:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_title(f"{label} ({_ARROW[label]})", fontsize="medium")
        ax.set_xlabel("temperature")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return fig


def write_report(out: Path, table: pd.DataFrame, *, title: str, intro: str, data: Mapping[str, Any],
                 settings: Mapping[str, Any]) -> dict[str, Path]:
    """``figure5.csv``, ``figure5.png`` and ``report.md`` (the table without CI columns, the figure, the data
    statistics and the settings) in ``out``; returns their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"table": out / "figure5.csv", "figure": out / "figure5.png", "report": out / "report.md"}
    table.to_csv(files["table"], index=False)
    save_png(figure5(table), files["figure"])
    shown = table[["Method", "Temperature", *[c for c in FIGURE5_METRICS.values() if c in table]]]
    shown = shown.astype(object).where(shown.notna(), "")  # unmeasured cells stay empty, not "nan"
    files["report"].write_text("\n".join([
        f"# {title}", "", intro, "", to_markdown(shown), "", f"![Figure 5]({files['figure'].name})", "",
        "## Data", "", *(f"- {k}: {v}" for k, v in data.items()), "", *settings_markdown(settings),
    ]))
    return files
