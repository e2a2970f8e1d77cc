"""Token heatmaps of per-token quantities (paper Figure 4): self-contained HTML and PNG.

Each response (e.g. "chosen", "rejected") is a :class:`TokenHeatmap`: its tokens and named per-token rows,
typically the masked reward ``beta * r_t`` (nats), the token KL ``k_t`` (nats), the reward mask and the KL mask.
Colours are scaled per row: a row with negative values uses a diverging scale (blue < 0 < red, white at 0,
symmetric in max |value|), a non-negative row a sequential one (white at 0 to red at its max), so the mask zeros
that make SparsePO sparse are always white. A checkpoint's heatmaps go beside it, in ``<checkpoint>/heatmaps/``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure

from sparsepo.analysis.figures import new_figure, save_png

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
NEGATIVE: RGB = (33, 102, 172)
POSITIVE: RGB = (178, 24, 43)


@dataclass
class TokenHeatmap:
    """Tokens of one response and per-token rows of values.

    Attributes:
        tokens: length T, the decoded tokens (shown verbatim, HTML-escaped).
        rows: row name -> length-T values, in display order (e.g. ``{"reward (beta*r_t)": ..., "KL k_t": ...}``).
            Any sequence of numbers (list, numpy array, 1-D tensor) is accepted and stored as list[float].
    """

    tokens: list[str]
    rows: dict[str, list[float]]

    def __post_init__(self) -> None:
        self.tokens = list(self.tokens)
        if not self.tokens:
            raise ValueError("TokenHeatmap: no tokens")
        for i, tok in enumerate(self.tokens):
            if not isinstance(tok, str):
                raise TypeError(f"TokenHeatmap: token {i} is {type(tok).__name__}, expected str")
        if not self.rows:
            raise ValueError("TokenHeatmap: no rows")
        rows: dict[str, list[float]] = {}
        for name, values in self.rows.items():
            # .tolist() first: it also works for tensors in dtypes numpy lacks (bfloat16)
            seq = values.tolist() if hasattr(values, "tolist") else values
            vals = [float(v) for v in np.asarray(seq, dtype=float).reshape(-1)]
            if len(vals) != len(self.tokens):
                raise ValueError(
                    f"TokenHeatmap: row {name!r} has {len(vals)} values but there are {len(self.tokens)} tokens"
                )
            for i, v in enumerate(vals):
                if not math.isfinite(v):
                    raise ValueError(f"TokenHeatmap: row {name!r} has non-finite value {v} at token {i}")
            rows[str(name)] = vals
        self.rows = rows


def row_range(values: Sequence[float]) -> tuple[float, float]:
    """The (vmin, vmax) a row's colours span: (-m, m) if any value < 0, else (0, m), m = max |value| (1 if 0)."""
    m = max((abs(v) for v in values), default=0.0) or 1.0
    return (-m, m) if min(values) < 0 else (0.0, m)


def value_rgb(value: float, vmin: float, vmax: float) -> RGB:
    """Background colour of ``value`` on the scale (vmin, vmax) from :func:`row_range`.

    Linear from white at 0 towards POSITIVE at vmax (and towards NEGATIVE at vmin < 0); values outside are
    clipped. Monotone: as value grows, red minus blue strictly grows.
    """
    if value >= 0:
        t, end = (min(value / vmax, 1.0) if vmax > 0 else 0.0), POSITIVE
    else:
        t, end = (min(value / vmin, 1.0) if vmin < 0 else 0.0), NEGATIVE
    r, g, b = (round(w + t * (e - w)) for w, e in zip(WHITE, end, strict=True))
    return r, g, b


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _text_color(rgb: RGB) -> str:
    # relative luminance decides dark or light text, so tokens stay readable on dark cells
    return "#000" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "#fff"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; }
section { margin-bottom: 1.5em; }
h3 { font-size: 0.95em; margin: 0.8em 0 0.3em; }
h3 small { color: #666; font-weight: normal; }
.tokens { font-family: ui-monospace, monospace; line-height: 1.9; }
.tok { white-space: pre-wrap; padding: 0.1em 0.05em; border-radius: 2px; }
"""


def _as_maps(maps: TokenHeatmap | Mapping[str, TokenHeatmap]) -> dict[str, TokenHeatmap]:
    out = {"": maps} if isinstance(maps, TokenHeatmap) else dict(maps)
    if not out:
        raise ValueError("heatmap: no responses given")
    for key, hm in out.items():
        if not isinstance(hm, TokenHeatmap):
            raise TypeError(f"heatmap: response {key!r} is {type(hm).__name__}, expected TokenHeatmap")
    return out


def heatmap_html(maps: TokenHeatmap | Mapping[str, TokenHeatmap], title: str = "Token heatmap") -> str:
    """A self-contained HTML page (inline CSS, no scripts) with one section per response and one block of
    coloured token spans per row.

    Each span carries ``data-value`` (its value, repr precision) and a ``title`` tooltip listing the token's
    position and its value in every row. Tokens, names and titles are HTML-escaped.
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for response, hm in _as_maps(maps).items():
        parts.append("<section>" + (f"<h2>{esc(response)}</h2>" if response else ""))
        for name, values in hm.rows.items():
            vmin, vmax = row_range(values)
            scale = f"<small>colour scale [{vmin:.4g}, {vmax:.4g}]</small>"
            parts.append(f'<div class="row"><h3>{esc(name)} {scale}</h3>')
            spans = []
            for i, (tok, v) in enumerate(zip(hm.tokens, values, strict=True)):
                rgb = value_rgb(v, vmin, vmax)
                tip = "\n".join([f"token {i}: {tok!r}"] + [f"{r}: {hm.rows[r][i]:.4g}" for r in hm.rows])
                spans.append(
                    f'<span class="tok" style="background:{_hex(rgb)};color:{_text_color(rgb)}" '
                    f'data-value="{v!r}" title="{esc(tip, quote=True)}">{esc(tok)}</span>'
                )
            parts.append('<p class="tokens">' + "".join(spans) + "</p></div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_heatmap_html(
    maps: TokenHeatmap | Mapping[str, TokenHeatmap], path: str | Path, title: str = "Token heatmap"
) -> Path:
    """Write :func:`heatmap_html` to ``path`` (UTF-8), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(heatmap_html(maps, title), encoding="utf-8")
    return path


def _label(token: str) -> str:
    # '$' would start matplotlib mathtext; control characters would break the tick layout
    return token.replace("$", r"\$").replace("\n", "\\n").replace("\t", "\\t")


def _colormap(vmin: float) -> LinearSegmentedColormap:
    ends = [NEGATIVE, WHITE, POSITIVE] if vmin < 0 else [WHITE, POSITIVE]
    # N=2048 lookup entries: fine enough that PNG cells match the HTML colours to within 1/255
    return LinearSegmentedColormap.from_list(
        "sparsepo", [tuple(c / 255 for c in rgb) for rgb in ends], N=2048
    )


def heatmap_figure(maps: TokenHeatmap | Mapping[str, TokenHeatmap], title: str = "Token heatmap") -> Figure:
    """A Figure with one heat strip (a 1 x T image of the row's values) per (response, row), tokens as x tick
    labels; the colours are those of :func:`value_rgb` (the same per-row scale as the HTML)."""
    maps = _as_maps(maps)
    strips = [(resp, name, hm) for resp, hm in maps.items() for name in hm.rows]
    longest = max(len(hm.tokens) for hm in maps.values())
    fig = new_figure(width=min(max(6.0, 0.3 * longest), 60.0), height=1.6 * len(strips) + 0.6)
    axes = fig.subplots(len(strips), 1, squeeze=False)[:, 0]
    for ax, (resp, name, hm) in zip(axes, strips, strict=True):
        values = np.asarray(hm.rows[name], dtype=float)[None, :]
        vmin, vmax = row_range(hm.rows[name])
        image = ax.imshow(values, cmap=_colormap(vmin), norm=Normalize(vmin, vmax), aspect="auto")
        ax.set_xticks(range(len(hm.tokens)), [_label(t) for t in hm.tokens], rotation=90, fontsize=8)
        ax.set_yticks([])
        ax.set_title(f"{resp}: {name}" if resp else name, fontsize=9, loc="left")
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    fig.suptitle(title)
    return fig


def plot_heatmap(
    maps: TokenHeatmap | Mapping[str, TokenHeatmap], path: str | Path, title: str = "Token heatmap"
) -> Path:
    """Write :func:`heatmap_figure` as a PNG at ``path``."""
    return save_png(heatmap_figure(maps, title), path)


HEATMAP_DIR = "heatmaps"


def write_heatmaps(
    maps: Sequence[TokenHeatmap | Mapping[str, TokenHeatmap]], out: str | Path, title: str = "pair"
) -> list[Path]:
    """Write ``pair<i>.html`` and ``pair<i>.png`` for each pair's maps into folder ``out``; returns the files."""
    out = Path(out)
    files = []
    for i, m in enumerate(maps):
        files.append(write_heatmap_html(m, out / f"pair{i}.html", title=f"{title} {i}"))
        files.append(plot_heatmap(m, out / f"pair{i}.png", title=f"{title} {i}"))
    return files


def checkpoint_heatmap_dir(checkpoint: str | Path) -> Path:
    """Where a checkpoint's heatmaps go by default: ``<checkpoint>/heatmaps/``, beside the weights they show."""
    return Path(checkpoint) / HEATMAP_DIR
