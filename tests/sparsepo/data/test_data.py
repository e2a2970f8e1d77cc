"""Preference data: formats, validation errors naming file/row/field, truncation and prompt masking."""

import json

import pandas as pd
import pytest
from transformers import AutoTokenizer

from sparsepo.assets import tiny_tokenizer_path
from sparsepo.data.preference import (
    DataConfig,
    PreferenceCollator,
    PreferenceDataError,
    load_preference_data,
    read_rows,
)

ROWS = [
    {"prompt": "the film was", "chosen": " a joy to watch .", "rejected": " a total bore ."},
    {"prompt": "i thought the plot", "chosen": " sparkled .", "rejected": " dragged ."},
]


@pytest.fixture(scope="module")
def tok():
    t = AutoTokenizer.from_pretrained(tiny_tokenizer_path())
    if t.pad_token is None:
        t.pad_token = t.eos_token
    return t


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_local_formats_read_the_same_rows(tmp_path, fmt):
    path = tmp_path / f"pairs.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS))
    elif fmt == "json":
        path.write_text(json.dumps(ROWS))
    elif fmt == "parquet":
        pd.DataFrame(ROWS).to_parquet(path)
    else:
        pd.DataFrame(ROWS).to_csv(path, index=False)
    assert read_rows(str(path)) == ROWS


BAD = [
    ({"prompt": "p", "chosen": "a"}, "rejected", "missing"),
    ({"prompt": "p", "chosen": 3, "rejected": "b"}, "chosen", "must be a string"),
    ({"prompt": "p", "chosen": "  ", "rejected": "b"}, "chosen", "empty response"),
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "chosen", "identical"),
    ({"prompt": "word " * 50, "chosen": "a", "rejected": "b"}, "prompt", "longer than max_prompt_length"),
]


@pytest.mark.parametrize("row,field,problem", BAD)
def test_bad_rows_name_file_row_and_field(tmp_path, tok, row, field, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [*ROWS, row]))
    cfg = DataConfig(path=str(path), max_length=64, max_prompt_length=16)
    with pytest.raises(PreferenceDataError) as e:
        load_preference_data(cfg, tok)
    assert e.value.row == 3 and e.value.field == field and problem in str(e.value)  # JSONL: row = line
    assert str(path) in str(e.value) and "row 3," in str(e.value)


def test_skip_invalid_drops_and_reports(tmp_path, tok):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [*ROWS, *(b[0] for b in BAD)]))
    ds, report = load_preference_data(DataConfig(path=str(path), max_length=64, max_prompt_length=16, skip_invalid=True), tok)
    assert len(ds) == 2 and report.read == 7 and report.kept == 2 and sum(report.skipped.values()) == 5
    assert "kept 2 of 7" in str(report)


def test_malformed_json_line_is_reported(tmp_path, tok):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(PreferenceDataError, match=r"row 2, field '<json>': not valid JSON; Expecting"):
        load_preference_data(DataConfig(path=str(path)), tok)


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("wrapped.json", json.dumps({"data": ROWS}), ROWS),  # the `datasets` JSON export shape
        ("one.json", json.dumps(ROWS[0]), ROWS[:1]),
        ("pretty.jsonl", json.dumps(ROWS[0], indent=2), ROWS[:1]),  # one object over several lines
        ("lines.json", "\n".join(json.dumps(r) for r in ROWS) + "\n\n", ROWS),  # JSON lines under a .json name
    ],
)
def test_json_shapes(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    assert read_rows(str(path)) == expected


@pytest.mark.parametrize(
    "text, row, problem",
    [
        ('[{"prompt": "a",\n  "chosen": }]', None, "not valid JSON (line 2, column 13)"),
        (json.dumps([ROWS[0], "oops"]), 2, "row 2, field '<json>': expected an object with prompt/chosen/rejected, got str"),
        (json.dumps(ROWS[0]) + "\n\n[1, 2]\n", 3, "row 3, field '<json>': expected an object"),  # JSON lines: row = line
    ],
)
def test_malformed_json_documents_name_the_row(tmp_path, text, row, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(PreferenceDataError) as e:
        read_rows(str(path))
    assert e.value.row == row and problem in str(e.value) and str(path) in str(e.value)


def test_truncation_and_prompt_masking_by_hand(tok):
    prompt_ids = tok("the film was")["input_ids"]
    chosen_ids = tok(" a joy to watch .", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    rejected_ids = tok(" a total bore .", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    max_len = len(prompt_ids) + 3
    ds, _ = load_preference_data(DataConfig(max_length=max_len, max_prompt_length=len(prompt_ids)), tok, rows=ROWS[:1])
    ex = ds[0]
    assert ex["prompt_ids"] == prompt_ids
    assert ex["chosen_ids"] == chosen_ids[:3] and ex["rejected_ids"] == rejected_ids[:3]

    batch = PreferenceCollator(pad_token_id=tok.pad_token_id)(
        [ex, {"prompt_ids": [5], "chosen_ids": [6], "rejected_ids": [7, 8]}]
    )
    p = len(prompt_ids)
    assert batch["input_ids"].shape == (4, p + 3)
    assert batch["input_ids"][0].tolist() == prompt_ids + chosen_ids[:3]
    assert batch["loss_mask"][0].tolist() == [0] * p + [1, 1, 1]
    assert batch["input_ids"][2].tolist() == prompt_ids + rejected_ids[:3]
    assert batch["loss_mask"][1].tolist() == [0, 1] + [0] * (p + 1)
    assert batch["attention_mask"][3].tolist() == [1, 1, 1] + [0] * p
    assert batch["input_ids"][3, 3:].eq(tok.pad_token_id).all()


def test_truncate_prompt_keeps_its_end(tok):
    row = {"prompt": "one two three four five six seven eight", "chosen": " yes", "rejected": " no"}
    full = tok(row["prompt"])["input_ids"]
    ds, _ = load_preference_data(DataConfig(max_length=32, max_prompt_length=4, truncate_prompt=True), tok, rows=[row])
    assert ds[0]["prompt_ids"] == full[-4:]


def test_conversational_rows_use_the_chat_template(tok):
    row = {
        "prompt": [{"role": "user", "content": "review the film"}],
        "chosen": [{"role": "assistant", "content": "wonderful"}],
        "rejected": [{"role": "assistant", "content": "dreadful"}],
    }
    ds, _ = load_preference_data(DataConfig(max_length=128, max_prompt_length=64), tok, rows=[row])
    ex = ds[0]
    head = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    whole = tok.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
    assert tok.decode(ex["prompt_ids"]) == head
    assert tok.decode(ex["prompt_ids"] + ex["chosen_ids"]) == whole
    assert "wonderful" in tok.decode(ex["chosen_ids"]) and "dreadful" in tok.decode(ex["rejected_ids"])


def test_missing_file_and_unknown_format(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_rows(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="unsupported format"):
        read_rows(str(tmp_path / "x.txt"))


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_is_an_error_naming_row_and_field(tmp_path, tok, prompt):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [*ROWS, {"prompt": prompt, "chosen": " yes", "rejected": " no"}]))
    with pytest.raises(PreferenceDataError, match=f"{path}: row 3, field 'prompt': empty prompt") as e:
        load_preference_data(DataConfig(path=str(path)), tok)
    assert (e.value.row, e.value.field) == (3, "prompt")


def test_jsonl_row_numbers_are_line_numbers(tmp_path, tok):
    path = tmp_path / "pairs.jsonl"
    bad = {"prompt": "p", "chosen": "same", "rejected": "same"}
    path.write_text(f"{json.dumps(ROWS[0])}\n\n   \n{json.dumps(bad)}\n")  # blank lines 2 and 3 count as lines
    with pytest.raises(PreferenceDataError, match="row 4, field 'chosen'") as e:
        load_preference_data(DataConfig(path=str(path)), tok)
    assert e.value.row == 4 and e.value.line is None


def test_csv_rows_count_data_rows_and_name_their_line(tmp_path, tok):
    path = tmp_path / "pairs.csv"
    rows = [ROWS[0], {"prompt": "a review\nover two lines", "chosen": " good", "rejected": " bad"},
            {"prompt": "p", "chosen": "same", "rejected": "same"}]
    pd.DataFrame(rows).to_csv(path, index=False)
    assert path.read_text().count("\n") == 5  # header, row 1, row 2 (two lines), row 3
    with pytest.raises(PreferenceDataError) as e:
        load_preference_data(DataConfig(path=str(path)), tok)
    assert (e.value.row, e.value.line) == (3, 5)
    assert f"{path}: row 3 (line 5), field 'chosen': identical" in str(e.value)


def test_misspelt_column_names_the_columns_found_and_the_closest(tmp_path, tok):
    path = tmp_path / "pairs.csv"
    pd.DataFrame([{"prompt": "the film was", "chosen": " fine", "rejcted": " dull", "source": "x"}]).to_csv(path, index=False)
    with pytest.raises(PreferenceDataError) as e:
        load_preference_data(DataConfig(path=str(path)), tok)
    msg = str(e.value)
    assert "row 1 (line 2), field 'rejected': missing" in msg
    assert "['prompt', 'chosen', 'rejcted', 'source']" in msg and "did you mean 'rejcted'?" in msg


def test_skip_invalid_drops_a_broken_json_line(tmp_path, tok):
    path = tmp_path / "pairs.jsonl"
    path.write_text(f"{json.dumps(ROWS[0])}\n{{not json\n{json.dumps(ROWS[1])}\n")
    ds, report = load_preference_data(DataConfig(path=str(path), skip_invalid=True), tok)
    assert len(ds) == 2 and (report.read, report.kept) == (3, 2)
    assert report.skipped == {"<json>: not valid JSON": 1} and report.skipped_rows == {"<json>: not valid JSON": [2]}


def test_skip_report_gives_whole_reasons_counts_and_first_rows(tmp_path, tok):
    long = {"prompt": "word " * 50, "chosen": "a", "rejected": "b"}
    same = {"prompt": "p", "chosen": "same", "rejected": "same"}
    rows = [ROWS[0], long, same, long, *[same] * 6, ROWS[1]]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = DataConfig(path=str(path), max_length=64, max_prompt_length=16, skip_invalid=True)
    _, report = load_preference_data(cfg, tok)
    assert report.skipped_rows == {
        "chosen: identical to 'rejected'": [3, 5, 6, 7, 8, 9, 10],
        "prompt: longer than max_prompt_length=16": [2, 4],
    }
    assert str(report) == (
        f"{path}: kept 2 of 11 pairs; skipped 9: 7 x [chosen: identical to 'rejected'] (rows 3, 5, 6, 7, 8, ...); "
        "2 x [prompt: longer than max_prompt_length=16] (rows 2, 4)"
    )
