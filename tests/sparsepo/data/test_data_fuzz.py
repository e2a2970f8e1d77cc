"""Property-based fuzz of the preference-data reader (hypothesis): whatever rows a user file holds, in JSONL, JSON,
CSV or Parquet, loading either gives exactly the valid rows or ends in one PreferenceDataError naming the file,
the first bad row and a field; with ``skip_invalid`` it keeps exactly the valid rows. Never another exception.
Validity is decided here independently of the reader, from the rules in ``sparsepo.data.preference``'s docs."""

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from sparsepo.assets import tiny_tokenizer_path
from sparsepo.data.preference import FIELDS, DataConfig, PreferenceDataError, load_preference_data

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=12)
VALUE = st.one_of(TEXT, TEXT, TEXT, st.integers(-5, 5), st.floats(allow_nan=False, width=16), st.none(), st.booleans(),
                  st.lists(st.integers(0, 3), max_size=2))
ROW = st.dictionaries(st.sampled_from([*FIELDS, *FIELDS, "promt", "extra"]), VALUE, min_size=0, max_size=4)
ROWS = st.lists(ROW, min_size=1, max_size=5)
TOKENIZER = AutoTokenizer.from_pretrained(tiny_tokenizer_path())


def valid(row: dict) -> bool:
    if not all(isinstance(row.get(f), str) for f in FIELDS):
        return False
    return all(row[f].strip() for f in FIELDS) and row["chosen"] != row["rejected"]


def as_cells(rows: list[dict]) -> list[dict]:
    """What a CSV file holds: every cell text (a missing or null value: an empty cell), every column in every row."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [{c: "" if r.get(c) is None else str(r[c]) for c in columns} for r in rows]


def write(path, fmt: str, rows: list[dict]) -> list[dict]:
    """Write ``rows`` in ``fmt``; returns the rows as the file holds them."""
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows
    if fmt == "json":
        path.write_text(json.dumps(rows))
        return rows
    cells = as_cells(rows)
    if fmt == "csv":
        pd.DataFrame(cells).to_csv(path, index=False)
    else:
        pd.DataFrame(cells).to_parquet(path)
    return cells


def check(path, held: list[dict], skip: bool) -> None:
    cfg = DataConfig(path=str(path), max_length=4096, max_prompt_length=2048, skip_invalid=skip)
    ok = [valid(r) for r in held]
    if skip and not any(ok):
        with pytest.raises(ValueError, match="no usable preference pairs"):
            load_preference_data(cfg, TOKENIZER)
        return
    if skip or all(ok):
        data, report = load_preference_data(cfg, TOKENIZER)
        assert len(data) == sum(ok) and report.kept == sum(ok) and report.read == len(held)
        return
    with pytest.raises(PreferenceDataError) as err:
        load_preference_data(cfg, TOKENIZER)
    message = str(err.value)
    assert str(path) in message and f"row {ok.index(False) + 1}" in message
    assert any(f"'{f}'" in message for f in (*FIELDS, "<row>", "<json>")), message


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
@pytest.mark.parametrize("skip", [False, True])
@FUZZ
@given(rows=ROWS)
def test_any_rows_load_exactly_or_fail_naming_file_row_and_field(tmp_path, fmt, skip, rows):
    path = tmp_path / f"pairs.{fmt}"
    if fmt in ("csv", "parquet") and not any(rows):
        rows = [{"prompt": ""}]  # a table needs a column
    check(path, write(path, fmt, rows), skip)


def test_a_csv_whose_responses_are_numbers_reads_them_as_text(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected\nrate it,5,1\n")
    data, _ = load_preference_data(DataConfig(path=str(path), max_length=64, max_prompt_length=32), TOKENIZER)
    assert len(data) == 1


def test_conversational_rows_read_from_parquet(tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_path())
    row = {"prompt": [{"role": "user", "content": "review it"}], "chosen": [{"role": "assistant", "content": "great"}],
           "rejected": [{"role": "assistant", "content": "awful"}]}
    path = tmp_path / "pairs.parquet"
    pd.DataFrame([row]).to_parquet(path)
    data, _ = load_preference_data(DataConfig(path=str(path), max_length=128, max_prompt_length=64), tok)
    assert len(data) == 1


def test_an_empty_csv_file_is_an_error_naming_it(tmp_path):
    from sparsepo.data.preference import read_rows

    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(PreferenceDataError, match=r"empty.csv: field '<file>': empty CSV file"):
        read_rows(str(path))
