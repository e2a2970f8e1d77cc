"""HH-RLHF transcripts -> conversational pairs: multi-turn rows, malformed rows, and the rows reaching the trainer."""

from __future__ import annotations

import json

import pytest

from sparsepo.data.preference import DataConfig, PreferenceDataError, load_preference_data
from sparsepo.experiments.dialogue.transcripts import hh_row_to_pair, load_hh_pairs, parse_transcript
from sparsepo.training.models import load_tokenizer
from sparsepo.training.sft import load_sft_data

PREFIX = ("\n\nHuman: What is a good film for tonight?\n\nAssistant: What do you like?"
          "\n\nHuman: Something calm.\n\nAssistant:")
ROW = {"chosen": PREFIX + " Try Paterson: a quiet film about a poet.",
       "rejected": PREFIX + " Watch whatever.\n\nIt is all the same."}


def test_multi_turn_transcript_becomes_shared_prompt_and_last_responses():
    pair = hh_row_to_pair(ROW, "hh.jsonl", 0)
    assert pair["prompt"] == [
        {"role": "user", "content": "What is a good film for tonight?"},
        {"role": "assistant", "content": "What do you like?"},
        {"role": "user", "content": "Something calm."},
    ]
    assert pair["chosen"] == [{"role": "assistant", "content": "Try Paterson: a quiet film about a poet."}]
    # a response keeps its own paragraph breaks: only a role marker after a blank line starts a turn
    assert pair["rejected"] == [{"role": "assistant", "content": "Watch whatever.\n\nIt is all the same."}]


def test_single_turn_and_missing_leading_blank_lines():
    assert parse_transcript("Human: hi\n\nAssistant: hello") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


@pytest.mark.parametrize(
    "row,field,problem",
    [
        ({"chosen": "just text", "rejected": ROW["rejected"]}, "chosen", "no '\\n\\nHuman:'"),
        ({"chosen": "hi\n\nHuman: a\n\nAssistant: b", "rejected": ROW["rejected"]}, "chosen", "text before"),
        ({"chosen": "\n\nAssistant: a\n\nHuman: b\n\nAssistant: c", "rejected": ROW["rejected"]}, "chosen",
         "turn 1 is Assistant but Human was expected"),
        ({"chosen": ROW["chosen"], "rejected": "\n\nHuman: a\n\nHuman: b\n\nAssistant: c"}, "rejected",
         "turn 2 is Human but Assistant was expected"),
        ({"chosen": ROW["chosen"], "rejected": PREFIX + " ok\n\nHuman: and?"}, "rejected",
         "does not end with an Assistant turn"),
        ({"chosen": ROW["chosen"], "rejected": PREFIX + "  "}, "rejected", "last Assistant turn is empty"),
        ({"chosen": ROW["chosen"], "rejected": "\n\nHuman: What is a good film for tonight?\n\nAssistant: x"}, "rejected",
         "differs from 'chosen' before the last Assistant turn (in length"),
        ({"chosen": ROW["chosen"], "rejected": ROW["chosen"].replace("calm", "loud") + "x"}, "rejected",
         "(at turn 3)"),
        ({"chosen": ROW["chosen"], "rejected": ROW["chosen"]}, "rejected", "identical"),
        ({"chosen": ROW["chosen"]}, "rejected", "missing"),
        ({"chosen": 3, "rejected": ROW["rejected"]}, "chosen", "must be a transcript string"),
    ],
)
def test_malformed_transcripts_name_row_field_and_problem(row, field, problem):
    with pytest.raises(PreferenceDataError, match="hh.jsonl: row 7") as e:
        hh_row_to_pair(row, "hh.jsonl", 7)
    assert e.value.field == field and problem in e.value.problem


def test_local_file_loads_skips_malformed_rows_and_feeds_po_and_sft(tmp_path):
    path = tmp_path / "hh.jsonl"
    bad = {"chosen": ROW["chosen"], "rejected": "no markers"}
    path.write_text("".join(json.dumps(r) + "\n" for r in (ROW, bad, ROW)))
    with pytest.raises(PreferenceDataError, match="hh.jsonl: row 2, field 'rejected'"):  # row = line number
        load_hh_pairs(str(path))
    pairs, report = load_hh_pairs(str(path), skip_invalid=True)
    assert len(pairs) == 2 and "kept 2 of 3" in str(report) and "rejected: no" in str(report)
    tok = load_tokenizer("tiny-llama")  # has a chat template
    cfg = DataConfig(max_length=128, max_prompt_length=96)
    ds, _ = load_preference_data(cfg, tok, rows=pairs)
    assert "Paterson" in tok.decode(ds[0]["chosen_ids"]) and "calm" in tok.decode(ds[0]["prompt_ids"])
    sft, _ = load_sft_data(cfg, tok, rows=pairs)  # SFT on the chosen responses
    assert sft[0]["prompt_ids"] == ds[0]["prompt_ids"] and sft[0]["response_ids"] == ds[0]["chosen_ids"]
