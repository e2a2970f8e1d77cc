"""Offline preference sets built from corpora that ship inside registry packages (no hub needed).

``offline:review-pairs``: a conversational "write a positive review" request answered by a positive (chosen)
and a negative (rejected) Pang & Lee sentence. A quick, real preference signal for smoke runs and tests;
the paper's sentiment pairs, sampled from the reference model, are built by ``sparsepo.experiments.sentiment.pairs``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from sparsepo.assets import load_sentences

REQUEST = "Write one sentence of a positive movie review."


def review_pairs(n: int = 1000, seed: int = 0) -> list[dict]:
    rows = load_sentences()
    pos = [r["text"].strip() for r in rows if r["label"] == 1]
    neg = [r["text"].strip() for r in rows if r["label"] == 0]
    rng = random.Random(seed)
    rng.shuffle(pos)
    rng.shuffle(neg)
    return [
        {"prompt": [{"role": "user", "content": REQUEST}], "chosen": p, "rejected": q}
        for p, q in zip(pos[:n], neg[:n], strict=False)
    ]


OFFLINE_SETS: dict[str, Callable[[], list[dict]]] = {"review-pairs": review_pairs}


def offline_pairs(name: str) -> list[dict]:
    if name not in OFFLINE_SETS:
        raise KeyError(f"unknown offline preference set {name!r}; available: {sorted(OFFLINE_SETS)}")
    return OFFLINE_SETS[name]()
