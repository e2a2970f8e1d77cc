"""Sentiment preference pairs as in the paper (3.2): two reference samples per review prefix, ranked by reward.

For each prompt the reference (SFT) model samples two completions; the sentiment scorer gives each
P(positive | prompt + completion); the higher one is ``chosen``. Pairs whose two rewards tie carry no
preference and are dropped. Pairs are cached in a JSONL file named by a hash of everything that determines
them, so a rerun (or a resumed sweep) never regenerates them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sparsepo.eval.reward_models import make_scorer
from sparsepo.generation import SamplingConfig, make_generator
from sparsepo.io import read_jsonl


def pairs_key(**spec: Any) -> str:
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_sentiment_pairs(
    model: str,
    prompts: list[str],
    *,
    reward: str = "vader",
    reward_kwargs: dict[str, Any] | None = None,
    backend: str = "hf",
    backend_kwargs: dict[str, Any] | None = None,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path,
) -> tuple[Path, list[dict[str, Any]]]:
    """Return ``(jsonl_path, rows)``; rows have ``prompt``, ``chosen``, ``rejected`` and both rewards."""
    spec = dict(model=model, prompts=prompts, reward=reward, reward_kwargs=reward_kwargs or {}, max_new_tokens=max_new_tokens,
                temperature=temperature, seed=seed)
    path = Path(cache_dir) / f"sentiment-pairs-{pairs_key(**spec)}.jsonl"
    if path.exists():
        return path, read_jsonl(path)
    generator = make_generator(backend, model, **(backend_kwargs or {}))
    samples = generator.generate(
        prompts, SamplingConfig(n=2, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    )
    if hasattr(generator, "close"):
        generator.close()
    scorer = make_scorer(reward, **(reward_kwargs or {}))
    texts = [p + c.text for p, pair in zip(prompts, samples, strict=True) for c in pair]
    scores = scorer.score(texts)
    rows = []
    for i, (prompt, pair) in enumerate(zip(prompts, samples, strict=True)):
        (a, ra), (b, rb) = (pair[0].text, scores[2 * i]), (pair[1].text, scores[2 * i + 1])
        if ra == rb or a.strip() == b.strip() or not a.strip() or not b.strip():
            continue
        (cw, rw), (cl, rl) = ((a, ra), (b, rb)) if ra > rb else ((b, rb), (a, ra))
        rows.append({"prompt": prompt, "chosen": cw, "rejected": cl, "reward_chosen": rw, "reward_rejected": rl})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)  # atomic: an interrupted run leaves no half-written cache
    return path, rows
