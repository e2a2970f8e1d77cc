"""TL;DR feedback rows (the openai/summarize_from_feedback schema): parsing, binarising, length filter, errors."""

from __future__ import annotations

import json
import re

import pytest

from sparsepo.data.preference import PreferenceDataError
from sparsepo.experiments.summarization.tldr import (
    binarise_axis,
    feedback_pairs,
    length_filter,
    parse_comparison,
    read_feedback,
    sample_pairs,
)

INFO = {"id": "t3_a", "post": "My cat ate my homework. ", "title": "Cat trouble", "subreddit": "pets"}


def comparison(choice: int, a: str = "cat ate homework", b: str = "dog days", info: dict = INFO) -> dict:
    return {"info": info, "summaries": [{"text": a, "policy": "x"}, {"text": b, "policy": "y"}], "choice": choice,
            "worker": "w", "batch": "b", "split": "train", "extra": {"confidence": 8}}


def rated(post_id: str, text: str, overall: int) -> dict:
    return {"info": {**INFO, "id": post_id}, "summary": {"text": text, "axes": {"overall": overall}}, "split": "valid"}


def test_comparison_prefers_the_chosen_summary_and_formats_the_post():
    row = parse_comparison(comparison(1), "f.jsonl", 1)
    assert row == {"id": "t3_a", "document": "SUBREDDIT: r/pets\nTITLE: Cat trouble\nPOST: My cat ate my homework.",
                   "chosen": "dog days", "rejected": "cat ate homework"}
    assert parse_comparison(comparison(0), "f.jsonl", 1)["chosen"] == "cat ate homework"


@pytest.mark.parametrize("row, field", [
    (comparison(2), "choice"),
    (comparison(True), "choice"),
    ({**comparison(0), "summaries": [{"text": "only one"}]}, "summaries"),
    (comparison(0, b="  "), "summaries[1].text"),
    (comparison(0, info={**INFO, "title": None}), "info.title"),
    ({**comparison(0), "info": "a post"}, "info"),
])
def test_bad_comparison_names_row_and_field(row, field):
    with pytest.raises(PreferenceDataError, match=re.escape(f"f.jsonl: row 7, field '{field}'")):
        parse_comparison(row, "f.jsonl", 7)


def test_rated_summaries_binarise_best_against_worst_per_post():
    rows = [rated("p1", "ok", 4), rated("p1", "best", 7), rated("p1", "worst", 1), rated("p2", "a", 3),
            rated("p2", "b", 3), rated("p3", "alone", 5)]
    from sparsepo.experiments.summarization.tldr import parse_rated

    pairs = binarise_axis(parse_rated(r, "f", i) for i, r in enumerate(rows, start=1))
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [("p1", "best", "worst")]  # ties, singles: none


def test_length_filter_drops_pairs_differing_by_more_than_the_limit():
    pairs = [{"chosen": "w " * 5, "rejected": "w " * 105}, {"chosen": "w " * 5, "rejected": "w " * 106}]
    assert length_filter(pairs, 100) == pairs[:1]


def test_a_local_file_mixes_both_kinds_and_errors_give_the_line(tmp_path):
    path = tmp_path / "feedback.jsonl"
    rows = [comparison(0), rated("p1", "best", 6), rated("p1", "worst", 2), comparison(1, b="x " * 200)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = feedback_pairs(str(path))
    assert [p["chosen"] for p in pairs] == ["cat ate homework", "best"]  # the 200-word summary is filtered out
    assert len(sample_pairs([str(path)], per_source=1)) == 1
    path.write_text(json.dumps(comparison(0)) + "\n\n" + json.dumps({**comparison(0), "choice": None}) + "\n")
    with pytest.raises(PreferenceDataError, match=r"feedback.jsonl: row 3, field 'choice'"):
        feedback_pairs(str(path))


def test_a_hub_source_needs_subset_and_split():
    with pytest.raises(ValueError, match="<hub name>:<subset>:<split>"):
        read_feedback("openai/summarize_from_feedback")


def test_sft_split_reads_prompt_and_label_and_names_bad_rows(tmp_path):
    from sparsepo.experiments.summarization.experiment import sft_split

    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"prompt": "POST: hi\nTL;DR:", "label": "greeting "}) + "\n"
                    + json.dumps({"prompt": "POST: x\nTL;DR:"}) + "\n")
    with pytest.raises(PreferenceDataError, match=r"sft.jsonl: row 2, field 'label'"):
        sft_split(str(path))
    path.write_text(path.read_text().splitlines()[0] + "\n")
    assert sft_split(str(path)) == [{"prompt": "POST: hi\nTL;DR:", "completion": " greeting"}]


def test_paper_sources_read_each_hub_subset_and_split_mocked_hub(monkeypatch):
    """The --paper sources go to datasets.load_dataset(name, subset, split=...) (the hub is mocked: unreachable
    here); comparison rows and rated rows of the axis subset both become pairs."""
    import datasets

    from sparsepo.experiments.summarization.tldr import PAPER_TEST, PAPER_TRAIN

    calls = []

    def fake_load_dataset(name, subset, split):
        calls.append((name, subset, split))
        if subset == "comparisons":
            return [comparison(0), comparison(1, a="x y", b="the cat ate the homework")]
        return [rated("t3_p", "best summary", 7), rated("t3_p", "worst one", 2)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    pairs = sample_pairs(PAPER_TRAIN, per_source=None)
    assert calls == [("openai/summarize_from_feedback", "comparisons", "train"),
                     ("openai/summarize_from_feedback", "axis", "validation")]
    assert [p["chosen"] for p in pairs] == ["cat ate homework", "the cat ate the homework", "best summary"]
    assert [p["rejected"] for p in pairs] == ["dog days", "x y", "worst one"]
    calls.clear()
    sample_pairs(PAPER_TEST, per_source=None)
    assert [c[1:] for c in calls] == [("comparisons", "validation"), ("axis", "test")]
