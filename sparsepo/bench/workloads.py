"""Preference data sets for the throughput benchmarks, built offline from the Pang & Lee corpora.

``short``: every pair shares one ~40-token conversational request and its responses are one review sentence each
(the best case for shared-prompt packing). ``realistic``: like real preference data, every pair has its own
prompt and responses, each about 64-256 tokens long (uniform) and of varying length: the prompt asks to continue an excerpt of
one review, the chosen response is an excerpt of a positive review and the rejected one of a negative review.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORKLOADS = ("short", "realistic")
TOKENS_PER_WORD = 1.25  # SmolLM2's tokenizer on the Pang & Lee reviews: median 1.25 (1.16-1.44 over 200 reviews)


def short_pairs(n: int) -> list[dict]:
    """``n`` pairs of the ``offline:review-pairs`` set, every field conversational (TRL requires that)."""
    from sparsepo.data.offline_pairs import review_pairs

    rows = review_pairs(n=n, seed=0)
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} review pairs available, asked for {n}")
    return [{**r, **{k: [{"role": "assistant", "content": r[k]}] for k in ("chosen", "rejected")}} for r in rows]


def _excerpt(text: str, rng: random.Random, lo_tokens: int, hi_tokens: int) -> str:
    words = text.split()
    n = min(len(words), int(rng.uniform(lo_tokens, hi_tokens) / TOKENS_PER_WORD))
    start = rng.randrange(0, len(words) - n + 1)
    return " ".join(words[start : start + n])


def realistic_pairs(n: int, lo_tokens: int = 64, hi_tokens: int = 256, seed: int = 0) -> list[dict]:
    """``n`` pairs with distinct prompts and responses of ``lo_tokens``-``hi_tokens`` tokens each (uniform)."""
    from sparsepo.assets import load_reviews

    reviews = load_reviews()
    pos = [r["text"] for r in reviews if r["label"] == 1]
    neg = [r["text"] for r in reviews if r["label"] == 0]
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = "Continue this movie review in the same style:\n" + _excerpt(rng.choice(pos + neg), rng, lo_tokens, hi_tokens)
        rows.append({
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": _excerpt(rng.choice(pos), rng, lo_tokens, hi_tokens)}],
            "rejected": [{"role": "assistant", "content": _excerpt(rng.choice(neg), rng, lo_tokens, hi_tokens)}],
        })
    return rows


def write_workload(path: Path, workload: str, n: int) -> None:
    """Write ``n`` pairs of ``workload`` to ``path`` as JSONL (both systems read this one file)."""
    from sparsepo.io import write_text

    rows = short_pairs(n) if workload == "short" else realistic_pairs(n)
    write_text(str(path), "".join(json.dumps(r) + "\n" for r in rows))


def tokens_per_pair(path: Path, model: str, max_length: int) -> float:
    """Mean tokens a pair costs when its prompt+chosen and prompt+rejected sequences are run separately (as TRL
    does), each cut to ``max_length``: the work both systems are credited with in tokens/s and FLOP utilisation."""
    from sparsepo.training.models import load_tokenizer

    tok = load_tokenizer(model)
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    total = 0
    for r in rows:
        for side in ("chosen", "rejected"):
            text = tok.apply_chat_template(r["prompt"] + r[side], tokenize=False)
            total += min(len(tok(text, add_special_tokens=False)["input_ids"]), max_length)
    return total / len(rows)
