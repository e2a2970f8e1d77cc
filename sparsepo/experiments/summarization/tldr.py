"""TL;DR preference pairs from the ``openai/summarize_from_feedback`` schema (paper appendix B.3).

Two row kinds, told apart by their fields (a local JSON/JSONL/Parquet/CSV file may mix them):

* a *comparison* (subset ``comparisons``): ``info`` (the post: ``post``/``title``/``subreddit``, or ``article``
  for news rows), ``summaries`` (a list of ``{"text": ...}``, two of them) and ``choice`` (the index of the
  preferred summary);
* a *rated summary* (subset ``axis``): ``info`` and one ``summary`` with ``text`` and ``axes.overall`` (a 1-7
  Likert score). The paper binarises these per post: the best-rated summary is chosen, the worst rejected
  (:func:`binarise_axis`; posts whose summaries all share one score give no pair).

Pairs whose chosen and rejected summaries differ by more than ``max_word_diff`` words (the paper: 100) are
dropped (:func:`length_filter`), so that length alone does not decide a preference. A data source is a local
file, or ``<hub name>:<subset>:<split>`` (``openai/summarize_from_feedback:comparisons:train``) read with
``datasets`` (the only place this module touches the hub). Errors name the source, the 1-based row (the line
number of a JSONL file) and the field.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sparsepo.data.preference import LOCAL_FORMATS, PreferenceDataError, SourceRow

FEEDBACK = "openai/summarize_from_feedback"
# The paper's preference data: comparisons and the binarised rated-summary subset, 20k train / 4k test pairs each.
# The hub's rated-summary subset has only validation and test splits: its validation split trains.
PAPER_TRAIN = (f"{FEEDBACK}:comparisons:train", f"{FEEDBACK}:axis:validation")
PAPER_TEST = (f"{FEEDBACK}:comparisons:validation", f"{FEEDBACK}:axis:test")
MAX_WORD_DIFF = 100


def tldr_document(info: Any, source: str, row: int) -> str:
    """The text a summary summarises: ``SUBREDDIT: r/<subreddit>\\nTITLE: <title>\\nPOST: <post>`` (the
    prompt layout of the TL;DR SFT models, without the trailing ``TL;DR:``), or a news row's ``article``."""
    if not isinstance(info, dict):
        raise PreferenceDataError(source, row, "info", "must be an object with post, title and subreddit")
    post = info.get("post")
    if post is None and isinstance(info.get("article"), str):  # the CNN/DM rows of the rated-summary subset
        return info["article"].strip()
    for key in ("post", "title"):
        if not isinstance(info.get(key), str) or not info[key].strip():
            raise PreferenceDataError(source, row, f"info.{key}", "missing or empty")
    subreddit = info.get("subreddit") or ""
    if not isinstance(subreddit, str):
        raise PreferenceDataError(source, row, "info.subreddit", f"must be text, got {type(subreddit).__name__}")
    return f"SUBREDDIT: r/{subreddit}\nTITLE: {info['title'].strip()}\nPOST: {post.strip()}"


def _summary_text(summary: Any, source: str, row: int, field: str) -> str:
    text = summary.get("text") if isinstance(summary, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise PreferenceDataError(source, row, f"{field}.text", "missing or empty summary text")
    return text.strip()


def parse_comparison(value: Any, source: str, row: int) -> dict[str, str]:
    """One comparison row -> ``{"id", "document", "chosen", "rejected"}``."""
    if not isinstance(value, dict):
        raise PreferenceDataError(source, row, "<row>", f"expected an object, got {type(value).__name__}")
    document = tldr_document(value.get("info"), source, row)
    summaries = value.get("summaries")
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise PreferenceDataError(source, row, "summaries", "must be a list of two summaries")
    texts = [_summary_text(s, source, row, f"summaries[{i}]") for i, s in enumerate(summaries)]
    choice = value.get("choice")
    if isinstance(choice, bool) or choice not in (0, 1):
        raise PreferenceDataError(source, row, "choice", f"must be 0 or 1 (the preferred summary), got {choice!r}")
    return {"id": str(value["info"].get("id", f"{source}:{row}")), "document": document,
            "chosen": texts[choice], "rejected": texts[1 - choice]}


def parse_rated(value: Any, source: str, row: int) -> dict[str, Any]:
    """One rated-summary row -> ``{"id", "document", "text", "overall"}``."""
    if not isinstance(value, dict):
        raise PreferenceDataError(source, row, "<row>", f"expected an object, got {type(value).__name__}")
    document = tldr_document(value.get("info"), source, row)
    summary = value.get("summary")
    text = _summary_text(summary, source, row, "summary")
    axes = summary.get("axes")
    overall = axes.get("overall") if isinstance(axes, dict) else None
    if isinstance(overall, bool) or not isinstance(overall, int | float):
        raise PreferenceDataError(source, row, "summary.axes.overall", f"must be a number (1-7), got {overall!r}")
    return {"id": str(value["info"].get("id", document)), "document": document, "text": text,
            "overall": float(overall)}


def binarise_axis(rated: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """Rated summaries grouped by post -> one pair per post: best ``overall`` chosen, worst rejected (first
    seen wins a tie); posts with one summary, or one score, give none. Post order is first appearance."""
    by_post: dict[str, list[dict[str, Any]]] = {}
    for r in rated:
        by_post.setdefault(r["id"], []).append(r)
    pairs = []
    for post_id, rows in by_post.items():
        best = max(rows, key=lambda r: r["overall"])
        worst = min(rows, key=lambda r: r["overall"])
        if best["overall"] > worst["overall"]:
            pairs.append({"id": post_id, "document": best["document"], "chosen": best["text"],
                          "rejected": worst["text"]})
    return pairs


def length_filter(pairs: Iterable[dict[str, str]], max_word_diff: int = MAX_WORD_DIFF) -> list[dict[str, str]]:
    """Pairs whose chosen and rejected summaries differ by at most ``max_word_diff`` words."""
    return [p for p in pairs if abs(len(p["chosen"].split()) - len(p["rejected"].split())) <= max_word_diff]


def read_feedback(spec: str) -> tuple[str, list[SourceRow]]:
    """``(source name for errors, numbered rows)`` of a local file or ``<hub name>:<subset>:<split>``."""
    from sparsepo.data.preference import read_source_rows

    if Path(spec).suffix in LOCAL_FORMATS or Path(spec).exists():
        return spec, read_source_rows(spec)
    parts = spec.split(":")
    if len(parts) != 3:
        raise ValueError(f"feedback source {spec!r}: expected a local file or <hub name>:<subset>:<split>, "
                         f"e.g. {FEEDBACK}:comparisons:train")
    import datasets

    name, subset, split = parts
    rows = datasets.load_dataset(name, subset, split=split)
    return spec, [SourceRow(i, None, row) for i, row in enumerate(rows, start=1)]


def feedback_pairs(spec: str, max_word_diff: int = MAX_WORD_DIFF) -> list[dict[str, str]]:
    """Length-filtered pairs of one source: its comparisons, then its binarised rated summaries."""
    source, rows = read_feedback(spec)
    comparisons, rated = [], []
    for r in rows:
        if isinstance(r.value, PreferenceDataError):
            raise r.value
        if isinstance(r.value, dict) and "summary" in r.value and "summaries" not in r.value:
            rated.append(parse_rated(r.value, source, r.number))
        else:
            comparisons.append(parse_comparison(r.value, source, r.number))
    return length_filter(comparisons + binarise_axis(rated), max_word_diff)


def sample_pairs(specs: Sequence[str], per_source: int | None, seed: int = 0,
                 max_word_diff: int = MAX_WORD_DIFF) -> list[dict[str, str]]:
    """Up to ``per_source`` pairs drawn uniformly (seeded) from each source, sources in order (None: all)."""
    out = []
    for k, spec in enumerate(specs):
        pairs = feedback_pairs(spec, max_word_diff)
        if per_source is not None and len(pairs) > per_source:
            pairs = random.Random(seed + k).sample(pairs, per_source)
        out += pairs
    return out
