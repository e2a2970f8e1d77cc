"""Tidy evaluation results: tables, incremental sample logs, Markdown, and side-by-side comparison.

Three record kinds flow out of every suite:

* **samples** -- one JSON object per generated sample (prompt id, text, per-sample scores), appended
  to a JSONL file as soon as it exists (:class:`JsonlWriter`), so a crash keeps everything computed.
* **items** -- one value per (system, suite, metric, setting, item): the unit the bootstrap resamples
  (:data:`ITEM_COLUMNS`; :func:`aggregate_items` turns them into the tidy table).
* **the tidy table** -- one row per system x suite x metric x setting with the value, its bootstrap
  CI and the number of items (:data:`TIDY_COLUMNS`), written as CSV, Parquet and Markdown
  (:func:`write_results`) and read back by :func:`read_results`.

``setting`` is a string of ``key=value`` pairs joined by ``;`` (``"temperature=0.25"``), built by
:func:`format_setting` and parsed back by :func:`parse_setting`, so heterogeneous suites share one
table. :func:`compare` puts systems side by side (metrics as rows, systems as columns).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparsepo.evaluation.stats import bootstrap_ci
from sparsepo.io import read_jsonl

TIDY_COLUMNS = ["system", "suite", "metric", "setting", "value", "ci_low", "ci_high", "n"]
ITEM_COLUMNS = ["system", "suite", "metric", "setting", "item", "value"]
_KEY_COLUMNS = ["system", "suite", "metric", "setting"]
_FLOAT_COLUMNS = ["value", "ci_low", "ci_high"]
RESULTS_STEM = "results"


# --------------------------------------------------------------------------- settings


def format_setting(setting: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
    """``{"temperature": 0.25, "n": 5}`` -> ``"temperature=0.25;n=5"`` (insertion order kept)."""
    pairs = {**(setting or {}), **kwargs}
    for key in pairs:
        if any(ch in str(key) for ch in "=;"):
            raise ValueError(f"setting key {key!r} may not contain '=' or ';'")
    return ";".join(f"{k}={v}" for k, v in pairs.items())


def parse_setting(setting: str) -> dict[str, Any]:
    """Inverse of :func:`format_setting`; values that look numeric come back as int or float."""
    out: dict[str, Any] = {}
    for part in filter(None, str(setting).split(";")):
        key, sep, raw = part.partition("=")
        if not sep:
            raise ValueError(f"setting {setting!r}: part {part!r} is not key=value")
        out[key] = _number_or_text(raw)
    return out


def _number_or_text(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


# --------------------------------------------------------------------------- tidy tables


def _normalise(df: pd.DataFrame, columns: list[str], source: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected {columns}")
    out = df[columns].copy()
    for col in columns:
        if col in _FLOAT_COLUMNS:
            numeric = pd.to_numeric(out[col], errors="coerce")
            bad = numeric.isna() & out[col].notna() & (out[col].astype(str).str.strip() != "")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ValueError(f"{source}: row {row}, field {col!r}: {out[col].iloc[row]!r} is not a number")
            out[col] = numeric.astype("float64")
        elif col == "n":
            numeric = pd.to_numeric(out[col], errors="coerce")
            if numeric.isna().any():
                row = int(np.flatnonzero(numeric.isna().to_numpy())[0])
                raise ValueError(f"{source}: row {row}, field 'n': {out[col].iloc[row]!r} is not a count")
            out[col] = numeric.astype("int64")
        else:
            out[col] = out[col].fillna("").astype(str)
    return out.reset_index(drop=True)


def tidy_frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, source: str = "tidy table") -> pd.DataFrame:
    """Rows (dicts or a DataFrame) -> a validated tidy table with exactly :data:`TIDY_COLUMNS`.

    ``ci_low``/``ci_high`` may be missing (NaN) for values without an interval.
    """
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in _FLOAT_COLUMNS else "int64" if c == "n"
                                          else "str") for c in TIDY_COLUMNS})
    df = df.copy()
    for col in ("ci_low", "ci_high"):
        if col not in df.columns:
            df[col] = math.nan
    return _normalise(df, TIDY_COLUMNS, source)


def item_frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, source: str = "item table") -> pd.DataFrame:
    """Rows -> a validated item table with exactly :data:`ITEM_COLUMNS` (``item`` kept as text)."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "str") for c in ITEM_COLUMNS})
    return _normalise(df, ITEM_COLUMNS, source)


def aggregate_items(
    items: pd.DataFrame, *, n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0
) -> pd.DataFrame:
    """Item table -> tidy table: per (system, suite, metric, setting) the mean over items and its
    percentile bootstrap CI (resampling items), ``n`` = number of items. Group order is kept."""
    items = item_frame(items)
    rows = []
    for key, group in items.groupby(_KEY_COLUMNS, sort=False):
        ci = bootstrap_ci(group["value"].to_numpy(), n_resamples=n_resamples, alpha=alpha, seed=seed)
        rows.append({**dict(zip(_KEY_COLUMNS, key, strict=True)), "value": ci.value,
                     "ci_low": ci.low, "ci_high": ci.high, "n": ci.n})
    return tidy_frame(rows)


# --------------------------------------------------------------------------- JSONL


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class JsonlWriter:
    """Appends one JSON object per line and flushes it to disk at once (``fsync``), so records
    written before a crash survive. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_many([record])

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        lines = [json.dumps(dict(r), ensure_ascii=False, default=_jsonable) + "\n" for r in records]
        self._file.write("".join(lines))
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def append_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> None:
    """Append ``records`` to the JSONL file at ``path`` (created with its folders if needed)."""
    with JsonlWriter(path) as writer:
        writer.write_many(records)


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a results JSONL file as appended during a run: a missing file reads as [], a torn *last*
    line (a crash mid-write) is skipped with a warning, any other bad line is an error naming file and line."""
    return read_jsonl(path, missing_ok=True, torn_tail_ok=True, objects=True)


# --------------------------------------------------------------------------- writing / reading tables


def _atomic_write(path: Path, write: Any) -> None:
    # Write next to the target then rename, so an interrupted write never leaves a truncated table.
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_results(table: pd.DataFrame, out_dir: str | os.PathLike[str], *, stem: str = RESULTS_STEM) -> dict[str, Path]:
    """Write the tidy ``table`` to ``out_dir/{stem}.csv``, ``.parquet`` and ``.md``; returns the paths."""
    table = tidy_frame(table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv", "parquet": out / f"{stem}.parquet", "md": out / f"{stem}.md"}
    _atomic_write(paths["csv"], lambda p: table.to_csv(p, index=False))
    _atomic_write(paths["parquet"], lambda p: table.to_parquet(p, index=False))
    _atomic_write(paths["md"], lambda p: p.write_text(to_markdown(table) + "\n", encoding="utf-8"))
    return paths


def read_results(path: str | os.PathLike[str], *, stem: str = RESULTS_STEM) -> pd.DataFrame:
    """Read a tidy table from a ``.parquet``/``.csv`` file or a result folder (Parquet preferred)."""
    path = Path(path)
    if path.is_dir():
        for suffix in (".parquet", ".csv"):
            if (path / f"{stem}{suffix}").exists():
                return read_results(path / f"{stem}{suffix}")
        raise FileNotFoundError(f"{path}: no {stem}.parquet or {stem}.csv in this result folder")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such result file or folder")
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        # Empty settings must stay "" rather than become NaN.
        df = pd.read_csv(path, keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in _FLOAT_COLUMNS})
    else:
        raise ValueError(f"{path}: unknown table format (expected .parquet or .csv)")
    return tidy_frame(df, source=str(path))


# --------------------------------------------------------------------------- Markdown


def _cell(value: Any, float_format: str) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else format(float(value), float_format)
    return str(value).replace("|", "\\|").replace("\n", " ")


def settings_markdown(settings: Mapping[str, Any]) -> list[str]:
    """A report's closing "Settings" section, one ``key: value`` line per setting in a code block."""
    return ["## Settings", "", "```", *(f"{k}: {v}" for k, v in settings.items()), "```", ""]


def to_markdown(df: pd.DataFrame, *, float_format: str = ".4g", index: bool = False) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (NaN cells left empty)."""
    frame = df.reset_index() if index else df
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines)


CI_LOW, CI_HIGH = " CI low", " CI high"  # suffixes of a column's interval columns in the experiments' tables


def interval_cells(df: pd.DataFrame, float_format: str = ".4g") -> pd.DataFrame:
    """``df`` for reading: each column that has ``<column> CI low`` / ``CI high`` companions becomes text
    ``value [low, high]`` (the value alone where its interval is missing; empty where the value is) and the
    companions are dropped; other columns are kept as they are."""
    def text(v: Any) -> str:
        return _cell(float(v), float_format) if v is not None else ""

    out = {}
    for col in df.columns:
        if str(col).endswith((CI_LOW, CI_HIGH)):
            continue
        if f"{col}{CI_LOW}" not in df.columns:
            out[col] = df[col]
            continue
        cells = []
        for v, lo, hi in zip(df[col], df[f"{col}{CI_LOW}"], df[f"{col}{CI_HIGH}"], strict=True):
            v, lo, hi = text(v), text(lo), text(hi)
            cells.append(f"{v} [{lo}, {hi}]" if v and lo and hi else v)
        out[col] = cells
    return pd.DataFrame(out, index=df.index)


# --------------------------------------------------------------------------- comparison


def _load(source: pd.DataFrame | str | os.PathLike[str], k: int) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return tidy_frame(source, source=f"table #{k}"), f"table #{k}"
    return read_results(source), str(source)


def compare(
    sources: Sequence[pd.DataFrame | str | os.PathLike[str]], *, field: str = "value"
) -> pd.DataFrame:
    """Systems side by side: index (suite, metric, setting), one column per system, cells = ``field``
    (``value``, ``ci_low``, ``ci_high`` or ``n``). Row and column order follow first appearance.

    ``sources`` are tidy tables, table files or result folders; a system found in two sources for
    the same metric and setting is an error naming both.
    """
    if field not in ("value", "ci_low", "ci_high", "n"):
        raise ValueError(f"compare: field must be value, ci_low, ci_high or n, got {field!r}")
    frames, origin = [], {}
    for k, source in enumerate(sources):
        table, name = _load(source, k)
        for key in table[_KEY_COLUMNS].itertuples(index=False, name=None):
            if key in origin:
                raise ValueError(f"compare: {key} appears in both {origin[key]} and {name}")
            origin[key] = name
        frames.append(table)
    if not frames:
        raise ValueError("compare: no sources given")
    combined = pd.concat(frames, ignore_index=True)
    rows = list(dict.fromkeys(combined[["suite", "metric", "setting"]].itertuples(index=False, name=None)))
    systems = list(dict.fromkeys(combined["system"]))
    wide = combined.pivot(index=["suite", "metric", "setting"], columns="system", values=field)
    wide = wide.reindex(index=pd.MultiIndex.from_tuples(rows, names=["suite", "metric", "setting"]),
                        columns=systems)
    wide.columns.name = None
    return wide


def compare_markdown(
    sources: Sequence[pd.DataFrame | str | os.PathLike[str]], *, with_ci: bool = True, float_format: str = ".4g"
) -> str:
    """:func:`compare` rendered as Markdown; with ``with_ci`` each cell reads ``value [ci_low, ci_high]``."""
    tables = [_load(s, k)[0] for k, s in enumerate(sources)]
    values = compare(tables)
    if not with_ci:
        return to_markdown(values, float_format=float_format, index=True)
    low, high = compare(tables, field="ci_low"), compare(tables, field="ci_high")
    cells = values.copy().astype(object)
    for col in values.columns:
        for idx in values.index:
            v, lo, hi = values.at[idx, col], low.at[idx, col], high.at[idx, col]
            text = _cell(v, float_format)
            if not (pd.isna(lo) or pd.isna(hi)):
                text += f" [{_cell(lo, float_format)}, {_cell(hi, float_format)}]"
            cells.at[idx, col] = text
    return to_markdown(cells, float_format=float_format, index=True)
