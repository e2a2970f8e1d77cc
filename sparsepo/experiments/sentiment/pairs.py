"""Sentiment preference pairs as in the paper (3.2): two reference samples per review prefix, ranked by reward.

For each prompt the reference (SFT) model samples two completions; the sentiment scorer gives each
P(positive | prompt + completion); the higher one is ``chosen``. Pairs whose two rewards tie carry no
preference and are dropped. Pairs are cached in a JSONL file named by a hash of everything that determines
them (:func:`pairs_cache_path`), so a rerun (or a resumed sweep) never regenerates them and a change of any
input never reuses stale ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sparsepo.eval.reward_models import make_scorer
from sparsepo.experiments.stages import cache_key, model_fingerprint, write_rows
from sparsepo.generation import SamplingConfig, make_generator
from sparsepo.io import read_jsonl

PAIRS_VERSION = 1  # bump when the pairing rule of build_sentiment_pairs changes


def pairs_cache_path(
    model: str,
    prompts: list[str],
    *,
    reward: str,
    reward_kwargs: dict[str, Any],
    backend: str,
    backend_kwargs: dict[str, Any],
    sampling: SamplingConfig,
    cache_dir: str | Path,
) -> Path:
    """The cache file of the pairs these inputs give: model (resolved, with its files), prompt texts, scorer and
    its options (a reward model's files too), generation backend and its options, and every sampling setting."""
    reward_kwargs = {k: model_fingerprint(v) if k == "model" and isinstance(v, str) else v for k, v in reward_kwargs.items()}
    spec = dict(version=PAIRS_VERSION, model=model_fingerprint(model), prompts=prompts, reward=reward,
                reward_kwargs=reward_kwargs, backend=backend, backend_kwargs=backend_kwargs,
                sampling=dataclasses.asdict(sampling))
    return Path(cache_dir) / f"sentiment-pairs-{cache_key(**spec)}.jsonl"


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
    sampling = SamplingConfig(n=2, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    path = pairs_cache_path(model, prompts, reward=reward, reward_kwargs=reward_kwargs or {}, backend=backend,
                            backend_kwargs=backend_kwargs or {}, sampling=sampling, cache_dir=cache_dir)
    if path.exists():
        return path, read_jsonl(path)
    generator = make_generator(backend, model, **(backend_kwargs or {}))
    samples = generator.generate(prompts, sampling)
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
    return write_rows(path, rows), rows
