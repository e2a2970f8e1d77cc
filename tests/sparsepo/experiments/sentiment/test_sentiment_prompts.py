"""Train and test prompts of the sentiment experiment: disjoint by review and by text, deterministic."""

import pytest

from sparsepo.experiments.sentiment import prompts as prompts_mod
from sparsepo.experiments.sentiment.prompts import review_prompts, split_prompts


class WordTokenizer:
    """One token per word: prefixes are the first k words, so equal openings give equal prompts."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}

    def decode(self, ids):
        return " ".join(ids)


def _split_reviews_opening_alike(monkeypatch, opening: str, n_alike: int, seed: int):
    """40 train and 30 test prompts from ``n_alike`` reviews that open with ``opening`` and 80 that do not."""
    texts = [opening + f"review {i} " + "word " * 10 for i in range(n_alike)]
    texts += [f"review {i} opens in its own way here and then " + "word " * 10 for i in range(80)]
    monkeypatch.setattr(prompts_mod, "load_review_texts", lambda source, split="train": texts)
    return split_prompts("fake", WordTokenizer(), 40, 30, seed=seed)


def test_prompts_are_disjoint_by_text_even_when_reviews_open_alike(monkeypatch):
    # Half of the reviews open with the same 8 words: by review they are distinct, by text they collide.
    train, test = _split_reviews_opening_alike(monkeypatch, "the film is a story about a man who ", 60, seed=3)
    assert len(train) == 40 and len(test) == 30
    assert not set(train) & set(test)
    assert len(set(train)) == 40 and len(set(test)) == 30  # no repeats within a set either
    assert split_prompts("fake", WordTokenizer(), 40, 30, seed=3) == (train, test)  # deterministic


def test_test_prompts_from_their_own_split(monkeypatch):
    splits = {"train": [f"train review {i} has many words in it " for i in range(30)],
              "test": [f"test review {i} has many words in it " for i in range(30)]}
    monkeypatch.setattr(prompts_mod, "load_review_texts", lambda source, split="train": splits[split])
    train, test = split_prompts("fake", WordTokenizer(), 10, 10, test_split="test")
    assert all(p.startswith("train") for p in train) and all(p.startswith("test") for p in test)


def test_too_few_distinct_prompts_is_a_clear_error():
    with pytest.raises(ValueError, match="only 1 distinct prompts"):
        review_prompts(["a b c d e f"] * 20, WordTokenizer(), 2)  # only k=5 fits: one prefix, repeated
    assert review_prompts(["a b c d e f g h i j"], WordTokenizer(), 0) == []


def test_pang_lee_split_with_the_real_tokenizer_shares_no_text(tiny_llama_path):
    from sparsepo.training.models import load_tokenizer

    train, test = split_prompts("pang-lee", load_tokenizer(tiny_llama_path), 300, 200, seed=0)
    assert len(train) == 300 and len(test) == 200 and not set(train) & set(test)
    # disjoint by prefix too (Pang & Lee has "note : some may consider ..." openings of several lengths)
    assert not [(a, b) for a in train for b in test if a.startswith(b) or b.startswith(a)]


def test_a_train_prompt_that_a_test_prompt_begins_or_ends_inside_is_skipped(monkeypatch):
    # Reviews opening with the same words give prefixes of different lengths: one is a prefix of the other.
    opening = "note some may consider portions of the following text to be spoilers "
    train, test = _split_reviews_opening_alike(monkeypatch, opening, 40, seed=1)
    assert any(t.startswith("note") for t in test)
    assert not [(a, b) for a in train for b in test if a.startswith(b) or b.startswith(a)]
    assert not any(t.startswith("note") for t in train)


def test_a_review_file_without_text_names_its_first_row_from_one(tmp_path):
    from sparsepo.data.preference import PreferenceDataError
    from sparsepo.experiments.sentiment.prompts import load_review_texts

    path = tmp_path / "reviews.jsonl"
    path.write_text('{"text": "a fine film"}\n{"body": "no text field"}\n')
    with pytest.raises(PreferenceDataError, match=r"reviews.jsonl: row 2, field 'text': missing or empty"):
        load_review_texts(str(path))
