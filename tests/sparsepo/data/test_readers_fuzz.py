"""Property-based fuzz (hypothesis) of every reader of user files besides the preference-pair reader (which has its
own, ``test_data_fuzz.py``): SFT rows, HH-RLHF transcripts, TL;DR feedback, MBPP rows, review files and search-space
YAML. Whatever a file holds, reading it either succeeds or ends in one ``ValueError`` line naming the file and
where in it (row and field, or key): never another exception. With ``skip_invalid`` the reader keeps what it reads
and counts every row."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from sparsepo.assets import tiny_tokenizer_path

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=12)
SCALAR = st.one_of(TEXT, TEXT, st.integers(-3, 3), st.floats(allow_nan=False, width=16), st.none(), st.booleans())
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot"]), "content": SCALAR})
VALUE = st.one_of(SCALAR, SCALAR, st.lists(st.one_of(MESSAGE, SCALAR), max_size=3),
                  st.dictionaries(st.sampled_from(["text", "post", "title", "axes"]), SCALAR, max_size=2))
TURN = st.builds(lambda who, said: f"\n\n{who}: {said}", st.sampled_from(["Human", "Assistant", "Bot"]), TEXT)
TRANSCRIPT = st.lists(TURN, max_size=4).map("".join)
TOKENIZER = AutoTokenizer.from_pretrained(tiny_tokenizer_path())


def rows_of(keys: list[str], value=VALUE) -> st.SearchStrategy[list]:  # noqa: ANN001 - a strategy
    row = st.dictionaries(st.sampled_from(keys), value, max_size=len(keys))
    return st.lists(st.one_of(row, row, row, SCALAR), min_size=1, max_size=4)


def write_jsonl(path, rows: list) -> str:  # noqa: ANN001
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read_or_located_error(read, path: str, where: str = r"row \d+|field '") -> object:  # noqa: ANN001
    """``read()``'s value, or None when it raised a ValueError naming ``path`` and matching ``where``."""
    try:
        return read()
    except ValueError as err:
        message = str(err)
        assert path in message, message
        assert re.search(where, message) or "no usable" in message or "no MBPP rows" in message, message
        return None


@pytest.mark.parametrize("skip", [False, True])
@FUZZ
@given(rows=rows_of(["prompt", "completion", "messages", "chosen", "rejected", "extra"]))
def test_sft_rows(tmp_path, skip, rows):
    from sparsepo.data.preference import DataConfig
    from sparsepo.training.sft import load_sft_data

    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    got = read_or_located_error(lambda: load_sft_data(
        DataConfig(path=path, max_length=4096, max_prompt_length=2048, skip_invalid=skip), TOKENIZER), path)
    if got is not None:
        data, report = got
        assert report.read == len(rows) and len(data) == report.kept <= len(rows)


@FUZZ
@given(rows=rows_of(["prompt", "completion"], TEXT))
def test_sft_text_rows_load_exactly_when_every_prompt_and_completion_has_text(tmp_path, rows):
    from sparsepo.data.preference import DataConfig
    from sparsepo.training.sft import load_sft_data

    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    ok = all(isinstance(r, dict) and isinstance(r.get("prompt"), str) and r["prompt"].strip()
             and isinstance(r.get("completion"), str) and r["completion"].strip() for r in rows)
    got = read_or_located_error(lambda: load_sft_data(DataConfig(path=path, max_length=4096, max_prompt_length=2048),
                                                      TOKENIZER), path)
    assert (got is not None) == ok
    if ok:
        assert len(got[0]) == len(rows)


@pytest.mark.parametrize("skip", [False, True])
@FUZZ
@given(rows=rows_of(["chosen", "rejected", "extra"], st.one_of(TRANSCRIPT, TRANSCRIPT, SCALAR)))
def test_hh_transcripts(tmp_path, skip, rows):
    from sparsepo.experiments.dialogue.transcripts import load_hh_pairs

    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    got = read_or_located_error(lambda: load_hh_pairs(path, skip_invalid=skip), path)
    if got is not None:
        pairs, report = got
        assert len(pairs) <= len(rows)
        assert all(p["prompt"] and p["chosen"] and p["rejected"] for p in pairs)


@FUZZ
@given(rows=rows_of(["info", "summaries", "choice", "summary", "extra"],
                    st.one_of(VALUE, st.lists(VALUE, min_size=2, max_size=2), st.sampled_from([0, 1]))))
def test_tldr_feedback(tmp_path, rows):
    from sparsepo.experiments.summarization.tldr import feedback_pairs

    path = write_jsonl(tmp_path / "feedback.jsonl", rows)
    got = read_or_located_error(lambda: feedback_pairs(path), path)
    if got is not None:
        assert all(isinstance(p["chosen"], str) and p["chosen"] and p["chosen"] != "" for p in got)


@FUZZ
@given(rows=rows_of(["task_id", "text", "code", "test_list", "test_setup_code"],
                    st.one_of(VALUE, st.integers(1, 600), st.lists(TEXT, max_size=2))))
def test_mbpp_rows(tmp_path, rows):
    from sparsepo.evaluation.code import load_mbpp

    path = write_jsonl(tmp_path / "mbpp.jsonl", rows)
    got = read_or_located_error(lambda: load_mbpp(path, "test"), path)
    if got is not None:
        assert all(p.task_id.startswith("MBPP/") and p.test.strip() for p in got)


@FUZZ
@given(rows=rows_of(["text", "label"]))
def test_review_files(tmp_path, rows):
    from sparsepo.experiments.sentiment.prompts import load_review_texts

    path = write_jsonl(tmp_path / "reviews.jsonl", rows)
    got = read_or_located_error(lambda: load_review_texts(path), path)
    if got is not None:
        assert len(got) == len(rows) and all(isinstance(t, str) and t.strip() for t in got)


KINDS = ["grid", "choice", "uniform", "loguniform", "randint", "variants", "value", "grid_search"]
SPEC = st.one_of(SCALAR, st.lists(SCALAR, max_size=3),
                 st.dictionaries(st.sampled_from(KINDS), st.one_of(SCALAR, st.lists(SCALAR, max_size=3),
                                                                   st.dictionaries(TEXT, SCALAR, max_size=2)),
                                 max_size=2))


@FUZZ
@given(space=st.one_of(st.dictionaries(st.sampled_from(["loss.beta", "optim.lr", "run.seed", "x"]), SPEC, max_size=3),
                       SCALAR, st.lists(SCALAR, max_size=2)),
       garbage=st.booleans())
def test_search_space_yaml(tmp_path, space, garbage):
    from sparsepo.sweeps.search_space import load_space

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space) + (":\n  - [unclosed" if garbage else ""))
    got = read_or_located_error(lambda: load_space(path), str(path), r"key '|line \d+|mapping|empty")
    if got is not None:
        assert set(got) == {str(k) for k in space} and all(len(spec) == 1 for spec in got.values())
