"""Tidy tables, JSONL sample logs, Markdown and the side-by-side comparison."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sparsepo.evaluation.report import (
    ITEM_COLUMNS,
    TIDY_COLUMNS,
    JsonlWriter,
    aggregate_items,
    append_jsonl,
    compare,
    compare_markdown,
    format_setting,
    parse_setting,
    read_records,
    read_results,
    tidy_frame,
    to_markdown,
    write_results,
)


def _table(system: str, offset: float = 0.0) -> pd.DataFrame:
    rows = []
    for metric in ("rougeL_f1", "self_bleu"):
        for temp in (0.25, 1.0):
            v = offset + (0.3 if metric == "rougeL_f1" else 40.0) + temp
            rows.append({"system": system, "suite": "summarization", "metric": metric,
                         "setting": format_setting(temperature=temp), "value": v,
                         "ci_low": v - 0.1, "ci_high": v + 0.1, "n": 120})
    rows.append({"system": system, "suite": "openllm", "metric": "average", "setting": "",
                 "value": 12.5 + offset, "n": 6})  # no CI for this one
    return tidy_frame(rows)


def test_setting_round_trip():
    s = format_setting({"temperature": 0.25}, n=5, backend="vllm")
    assert s == "temperature=0.25;n=5;backend=vllm"
    assert parse_setting(s) == {"temperature": 0.25, "n": 5, "backend": "vllm"}
    assert parse_setting("") == {}
    with pytest.raises(ValueError, match="not key=value"):
        parse_setting("temperature")


def test_tidy_table_round_trips_through_csv_and_parquet(tmp_path):
    table = _table("sparsepo")
    paths = write_results(table, tmp_path / "run")
    assert list(table.columns) == TIDY_COLUMNS
    assert math.isnan(table.loc[4, "ci_low"]) and table.loc[4, "setting"] == ""
    from_parquet = read_results(paths["parquet"])
    from_csv = read_results(paths["csv"])
    pd.testing.assert_frame_equal(from_parquet, table)
    pd.testing.assert_frame_equal(from_csv, table)
    pd.testing.assert_frame_equal(read_results(tmp_path / "run"), table)  # folder -> parquet
    md = paths["md"].read_text().splitlines()
    assert md[0] == "| " + " | ".join(TIDY_COLUMNS) + " |"
    assert len(md) == 2 + len(table)
    assert "| sparsepo | openllm | average |  | 12.5 |  |  | 6 |" in md


def test_read_results_names_file_row_and_field(tmp_path):
    bad = _table("a")
    bad["value"] = bad["value"].astype(object)
    bad.loc[2, "value"] = "oops"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: row 2, field 'value': 'oops'"):
        read_results(path)
    _table("a").drop(columns=["metric"]).to_csv(tmp_path / "nometric.csv", index=False)
    with pytest.raises(ValueError, match=r"nometric\.csv: missing column\(s\) \['metric'\]"):
        read_results(tmp_path / "nometric.csv")
    with pytest.raises(FileNotFoundError, match="no results.parquet"):
        read_results(tmp_path)


def test_jsonl_appends_incrementally_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "out" / "samples.jsonl"
    with JsonlWriter(path) as writer:
        writer.write({"doc": 0, "text": "héllo | world", "score": np.float32(0.5)})
        # Visible on disk before the writer is closed: a crash now keeps it.
        assert json.loads(path.read_text().splitlines()[0])["text"] == "héllo | world"
        writer.write_many([{"doc": 1, "ids": np.arange(3)}])
    append_jsonl(path, [{"doc": 2}])
    with path.open("a") as f:
        f.write('{"doc": 3, "te')  # interrupted write
    with pytest.warns(UserWarning, match="line 4 is incomplete"):
        records = read_records(path)
    assert [r["doc"] for r in records] == [0, 1, 2]
    assert records[0]["score"] == 0.5 and records[1]["ids"] == [0, 1, 2]
    assert read_records(tmp_path / "missing.jsonl") == []


def test_jsonl_bad_middle_line_is_an_error(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match=r"s\.jsonl: line 2 is not valid JSON"):
        read_records(path)


def test_aggregate_items_means_and_cis():
    rng = np.random.default_rng(0)
    vals = rng.uniform(size=40)
    items = pd.DataFrame({"system": "a", "suite": "s", "metric": "m", "setting": "t=1",
                          "item": [str(i) for i in range(40)], "value": vals})
    const = items.assign(metric="c", value=2.0)
    table = aggregate_items(pd.concat([items, const])[ITEM_COLUMNS], n_resamples=500)
    m = table[table["metric"] == "m"].iloc[0]
    assert m["value"] == pytest.approx(vals.mean()) and m["n"] == 40
    assert m["ci_low"] < vals.mean() < m["ci_high"]
    c = table[table["metric"] == "c"].iloc[0]
    assert (c["value"], c["ci_low"], c["ci_high"]) == (2.0, 2.0, 2.0)


def test_compare_puts_metrics_in_rows_and_systems_in_columns(tmp_path):
    write_results(_table("dpo"), tmp_path / "dpo")
    wide = compare([_table("sparsepo", offset=1.0), tmp_path / "dpo"])
    assert list(wide.columns) == ["sparsepo", "dpo"]
    assert wide.index.names == ["suite", "metric", "setting"]
    assert list(wide.index)[:2] == [("summarization", "rougeL_f1", "temperature=0.25"),
                                    ("summarization", "rougeL_f1", "temperature=1.0")]
    assert wide.loc[("summarization", "self_bleu", "temperature=1.0"), "dpo"] == pytest.approx(41.0)
    assert wide.loc[("summarization", "self_bleu", "temperature=1.0"), "sparsepo"] == pytest.approx(42.0)
    assert wide.loc[("openllm", "average", ""), "sparsepo"] == pytest.approx(13.5)
    n = compare([_table("a"), _table("b")], field="n")
    assert (n.to_numpy() == np.array([[120, 120]] * 4 + [[6, 6]])).all()


def test_compare_keeps_missing_cells_and_rejects_duplicates():
    partial = _table("b").iloc[:2]
    wide = compare([_table("a"), partial])
    assert wide["b"].isna().sum() == 3
    with pytest.raises(ValueError, match="appears in both table #0 and table #1"):
        compare([_table("a"), _table("a")])


def test_compare_markdown_with_ci():
    md = compare_markdown([_table("a"), _table("b", offset=1.0)]).splitlines()
    assert md[0] == "| suite | metric | setting | a | b |"
    assert "| summarization | rougeL_f1 | temperature=0.25 | 0.55 [0.45, 0.65] | 1.55 [1.45, 1.65] |" in md
    assert "| openllm | average |  | 12.5 | 13.5 |" in md
    plain = compare_markdown([_table("a")], with_ci=False)
    assert "[" not in plain


def test_to_markdown_escapes_pipes():
    md = to_markdown(pd.DataFrame({"x": ["a|b"], "y": [float("nan")]}))
    assert md.splitlines()[2] == "| a\\|b |  |"
