"""The offline miniature's summarisation data, built deterministically from the Pang & Lee reviews (no hub).

* A **document** is the opening of a review: its first ``sentences`` sentences, kept only when they hold at
  most ``max_words`` words and the first one ``lead_words`` (min, max) words (short prompts: minutes on a CPU).
* Its **reference summary** is its lead sentence: the Lead-1 extractive summary of news summarisation, faithful
  by construction.
* A **preference pair** prefers the document's own lead sentence (faithful) to the lead sentence of the next
  document of the pair split (a fluent review opening about another film: unfaithful). Both come from the same
  length range, so their length difference stays under the paper's 100-word filter by construction.

Reviews are shuffled once (seeded) and cut into disjoint SFT, pair and evaluation splits, so no evaluation
document is seen in training.
"""

from __future__ import annotations

import random
from typing import Any

from sparsepo.evaluation.summarization import DEFAULT_PROMPT_TEMPLATE


def review_documents(sentences: int = 3, max_words: int = 70,
                     lead_words: tuple[int, int] = (6, 30)) -> list[dict[str, str]]:
    """``{"id", "document", "reference"}`` per usable Pang & Lee review, in file order (id: its 1-based row)."""
    from sparsepo.assets import load_reviews

    docs = []
    for row, review in enumerate(load_reviews(), start=1):
        lines = [s.strip() for s in review["text"].splitlines() if s.strip()][:sentences]
        lead = len(lines[0].split()) if lines else 0
        if len(lines) == sentences and lead_words[0] <= lead <= lead_words[1] \
                and sum(len(s.split()) for s in lines) <= max_words:
            docs.append({"id": f"pang-lee/{row}", "document": " ".join(lines), "reference": lines[0]})
    return docs


def miniature_splits(n_sft: int, n_pairs: int, n_eval: int, seed: int = 0,
                     **doc_kw: Any) -> dict[str, list[dict[str, str]]]:
    """Disjoint ``sft``, ``pairs`` and ``eval`` document lists (shuffled with ``seed``); ``doc_kw`` go to
    :func:`review_documents`. Raises when the corpus has too few usable documents."""
    docs = review_documents(**doc_kw)
    need = n_sft + n_pairs + n_eval
    if n_pairs < 2 or len(docs) < need:
        raise ValueError(f"summarisation miniature: needs n_pairs >= 2 and {need} documents, "
                         f"the reviews give {len(docs)} with {doc_kw or 'the default sizes'}")
    random.Random(seed).shuffle(docs)
    return {"sft": docs[:n_sft], "pairs": docs[n_sft:n_sft + n_pairs], "eval": docs[n_sft + n_pairs:need]}


def sft_rows(docs: list[dict[str, str]], template: str = DEFAULT_PROMPT_TEMPLATE) -> list[dict[str, str]]:
    """SFT rows ``prompt``/``completion``: the document in the prompt template, its reference as the answer."""
    return [{"prompt": template.format(document=d["document"]), "completion": " " + d["reference"]} for d in docs]


def preference_rows(docs: list[dict[str, str]], template: str = DEFAULT_PROMPT_TEMPLATE) -> list[dict[str, str]]:
    """Rows ``prompt``/``chosen``/``rejected``/``id``: document i's reference chosen, document i+1's (cyclic)
    rejected."""
    return [{"prompt": template.format(document=d["document"]), "chosen": " " + d["reference"],
             "rejected": " " + docs[(i + 1) % len(docs)]["reference"], "id": d["id"]} for i, d in enumerate(docs)]
