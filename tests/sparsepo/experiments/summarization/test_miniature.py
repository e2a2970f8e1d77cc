"""The offline miniature's data: documents from the Pang & Lee reviews, disjoint splits, faithful-vs-unfaithful pairs."""

from __future__ import annotations

import pytest

from sparsepo.experiments.summarization.miniature import (
    miniature_splits,
    preference_rows,
    review_documents,
    sft_rows,
)


def test_documents_are_review_openings_within_the_size_limits():
    docs = review_documents(sentences=3, max_words=70, lead_words=(6, 30))
    assert len(docs) > 300
    for d in docs:
        assert d["document"].startswith(d["reference"] + " ")  # Lead-1: the opening sentence
        assert len(d["document"].split()) <= 70 and 6 <= len(d["reference"].split()) <= 30


def test_splits_are_disjoint_and_deterministic():
    a, b = miniature_splits(10, 6, 4, seed=1), miniature_splits(10, 6, 4, seed=1)
    assert a == b and [len(a[k]) for k in ("sft", "pairs", "eval")] == [10, 6, 4]
    ids = [d["id"] for k in ("sft", "pairs", "eval") for d in a[k]]
    assert len(set(ids)) == 20
    assert miniature_splits(10, 6, 4, seed=2) != a
    with pytest.raises(ValueError, match="documents"):
        miniature_splits(10**4, 6, 4)


def test_pairs_prefer_the_faithful_summary():
    docs = miniature_splits(0, 5, 1, seed=0)["pairs"]
    rows = preference_rows(docs, "{document}\nTL;DR:")
    for d, row in zip(docs, rows, strict=True):
        assert row["prompt"] == d["document"] + "\nTL;DR:"
        assert row["chosen"].strip() in d["document"]  # faithful: taken from the document
        assert row["rejected"].strip() not in d["document"]  # another review's opening
    assert [r["rejected"] for r in rows] == [r["chosen"] for r in rows[1:] + rows[:1]]
    assert sft_rows(docs[:1], "{document} =")[0] == {"prompt": docs[0]["document"] + " =",
                                                    "completion": " " + docs[0]["reference"]}
