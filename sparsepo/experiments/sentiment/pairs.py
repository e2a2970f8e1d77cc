"""Sentiment preference pairs as in the paper (3.2): reference samples per review prefix, ranked by reward.

For each prompt the reference (SFT) model samples ``n`` completions (the paper: two); the sentiment scorer
gives each P(positive | prompt + completion); the highest-scored one is ``chosen`` and the lowest ``rejected``
(with two samples: the paper's rule). More samples give pairs with a wider reward margin from the same prompts,
which a short run learns from sooner. Pairs whose rewards tie carry no preference and are dropped. Pairs are cached in a JSONL file named by a hash of everything that determines
them (:func:`pairs_cache_path`), so a rerun (or a resumed sweep) never regenerates them and a change of any
input never reuses stale ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sparsepo.evaluation.reward_models import make_scorer
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
    n: int = 2,
    seed: int = 0,
    cache_dir: str | Path,
) -> tuple[Path, list[dict[str, Any]]]:
    """Return ``(jsonl_path, rows)``; rows have ``prompt``, ``chosen`` (best of ``n`` samples), ``rejected``
    (worst) and both rewards."""
    if n < 2:
        raise ValueError(f"a pair needs at least 2 samples per prompt, got n={n}")
    sampling = SamplingConfig(n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    path = pairs_cache_path(model, prompts, reward=reward, reward_kwargs=reward_kwargs or {}, backend=backend,
                            backend_kwargs=backend_kwargs or {}, sampling=sampling, cache_dir=cache_dir)
    if path.exists():
        return path, read_jsonl(path)
    generator = make_generator(backend, model, **(backend_kwargs or {}))
    samples = generator.generate(prompts, sampling)
    if hasattr(generator, "close"):
        generator.close()
    scorer = make_scorer(reward, **(reward_kwargs or {}))
    texts = [p + c.text for p, group in zip(prompts, samples, strict=True) for c in group]
    scores = iter(scorer.score(texts))
    rows = []
    for prompt, group in zip(prompts, samples, strict=True):
        # strict=False: `scores` is one iterator over every group, consumed a group at a time
        scored = [(c.text, r) for c, r in zip(group, scores, strict=False) if c.text.strip()]
        if len(scored) < 2:
            continue
        (cw, rw), (cl, rl) = max(scored, key=lambda s: s[1]), min(scored, key=lambda s: s[1])
        if rw == rl or cw.strip() == cl.strip():
            continue
        rows.append({"prompt": prompt, "chosen": cw, "rejected": cl, "reward_chosen": rw, "reward_rejected": rl})
    return write_rows(path, rows), rows
