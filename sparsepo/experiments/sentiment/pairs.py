"""Sentiment preference pairs as in the paper (3.2): two reference samples per review prefix, ranked by reward.

For each prompt the reference (SFT) model samples two completions; the sentiment scorer gives each
P(positive | prompt + completion); the higher one is ``chosen``. Pairs whose two rewards tie carry no
preference and are dropped. Pairs are cached in a JSONL file named by a hash of everything that determines
them (:func:`pairs_cache_path`), so a rerun (or a resumed sweep) never regenerates them and a change of any
input never reuses stale ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from sparsepo.assets import resolve_model
from sparsepo.eval.reward_models import make_scorer
from sparsepo.generation import SamplingConfig, make_generator
from sparsepo.io import read_jsonl

PAIRS_VERSION = 1  # bump when the pairing rule of build_sentiment_pairs changes
_HASHED_FILE_BYTES = 1 << 20  # files up to this size (config, tokenizer) are hashed; larger ones by size + mtime


def pairs_key(**spec: Any) -> str:
    # default=str: a value JSON cannot hold still changes the key when its text does
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_fingerprint(name: str) -> dict[str, Any]:
    """What identifies a model for caching: its resolved name or folder and, for a local folder, every file's
    relative path with a content hash (small files) or size and modification time (weights)."""
    resolved = resolve_model(name)
    folder = Path(resolved).expanduser()
    if not folder.is_dir():
        return {"name": resolved}  # a hub name
    files: dict[str, Any] = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            st = f.stat()
            small = st.st_size <= _HASHED_FILE_BYTES
            files[f.relative_to(folder).as_posix()] = (
                hashlib.sha1(f.read_bytes()).hexdigest() if small else [st.st_size, st.st_mtime_ns]
            )
    return {"path": str(folder.resolve()), "files": files}


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
    return Path(cache_dir) / f"sentiment-pairs-{pairs_key(**spec)}.jsonl"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)  # atomic: an interrupted run leaves no half-written cache
    return path, rows
