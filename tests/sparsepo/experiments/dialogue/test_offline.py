"""The offline HH-format dialogue set: deterministic, parsed by the HH transcript parser, chosen = helpful."""

from __future__ import annotations

import json

import pytest

from sparsepo.assets import load_sentences
from sparsepo.experiments.dialogue.offline import RUDE, VERDICT, review_dialogues
from sparsepo.experiments.dialogue.transcripts import hh_row_to_pair, load_hh_pairs
from sparsepo.io import write_text


def test_same_seed_same_rows_other_seed_other_rows():
    assert review_dialogues(12, seed=3) == review_dialogues(12, seed=3)
    assert review_dialogues(12, seed=3) != review_dialogues(12, seed=4)
    assert review_dialogues(12, seed=3)[:5] == review_dialogues(5, seed=3)  # a prefix does not depend on n


def test_rows_parse_as_hh_with_one_and_two_exchanges():
    pairs = [hh_row_to_pair(row, "offline", i + 1) for i, row in enumerate(review_dialogues(40))]
    lengths = {len(p["prompt"]) for p in pairs}
    assert lengths == {1, 3}  # single-exchange and multi-turn conversations, both present
    for p in pairs:
        assert [m["role"] for m in p["prompt"]] == ["user", "assistant", "user"][: len(p["prompt"])]
        assert p["chosen"][0]["content"] != p["rejected"][0]["content"]


def quoted(pair: dict) -> str:
    """The review sentence the human quotes (it may itself hold quotes)."""
    ask = pair["prompt"][0]["content"]
    return ask[ask.index('"') + 1 : ask.rindex('"')]


def test_chosen_is_true_to_the_quoted_sentence_and_rejected_is_rude_or_wrong():
    polarity = {r["text"].strip(): r["label"] for r in load_sentences()}
    for row in review_dialogues(60, seed=1):
        pair = hh_row_to_pair(row)
        label = polarity[quoted(pair)]
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        if len(pair["prompt"]) == 1:
            assert chosen in VERDICT[label]
            assert rejected in RUDE or rejected in VERDICT[1 - label]
        else:
            assert pair["prompt"][1]["content"] in VERDICT[label] and rejected in RUDE
    labels = [polarity[quoted(hh_row_to_pair(r))] for r in review_dialogues(6)]
    assert labels == [1, 0, 1, 0, 1, 0]  # classes alternate: balanced at any size


def test_written_rows_load_like_a_local_hh_file(tmp_path):
    path = tmp_path / "hh.jsonl"
    rows = review_dialogues(5)
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    pairs, _ = load_hh_pairs(str(path))
    assert pairs == [hh_row_to_pair(r) for r in rows]


def test_size_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"n must lie in \[1, 4000\]"):
        review_dialogues(0)
