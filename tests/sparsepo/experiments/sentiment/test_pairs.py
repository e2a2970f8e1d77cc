"""The sentiment pair cache key: every input that determines the pairs changes it; equal inputs share it."""

from __future__ import annotations

import shutil

import pytest

from sparsepo.experiments.sentiment.pairs import pairs_cache_path
from sparsepo.generation import SamplingConfig


@pytest.fixture
def model_dir(tmp_path, tiny_gpt2_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_gpt2_path, folder)
    return folder


def key(tmp_path, base_model, **changes):
    args = dict(model=str(base_model), prompts=["the film was", "i thought"], reward="vader", reward_kwargs={},
                backend="hf", backend_kwargs={}, sampling=SamplingConfig(n=2, max_new_tokens=12, seed=0))
    args.update(changes)
    return pairs_cache_path(args.pop("model"), args.pop("prompts"), cache_dir=tmp_path / "cache", **args)


@pytest.mark.parametrize(
    "change",
    [
        {"backend": "vllm"},
        {"backend_kwargs": {"gpu_memory_utilization": 0.5}},
        {"reward": "hf"},
        {"reward_kwargs": {"batch_size": 4}},
        {"prompts": ["the film was", "i thought so"]},
        {"prompts": ["i thought", "the film was"]},
        {"sampling": SamplingConfig(n=2, max_new_tokens=12, seed=1)},
        {"sampling": SamplingConfig(n=2, max_new_tokens=13, seed=0)},
        {"sampling": SamplingConfig(n=2, max_new_tokens=12, seed=0, temperature=0.7)},
        {"sampling": SamplingConfig(n=2, max_new_tokens=12, seed=0, top_p=0.9)},
        {"model": "tiny-llama"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_each_input_changes_the_key(tmp_path, model_dir, change):
    base = key(tmp_path, model_dir)
    assert base == key(tmp_path, model_dir)  # deterministic
    assert key(tmp_path, model_dir, **change) != base


def test_model_contents_and_location_change_the_key(tmp_path, model_dir):
    base = key(tmp_path, model_dir)
    (model_dir / "config.json").write_text((model_dir / "config.json").read_text().replace("}", ', "x": 1}', 1))
    edited = key(tmp_path, model_dir)
    assert edited != base
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")  # larger than the hashed size: size and mtime count
    assert key(tmp_path, model_dir) not in (base, edited)
    moved = shutil.copytree(model_dir, tmp_path / "elsewhere")
    assert key(tmp_path, moved) != key(tmp_path, model_dir)


def test_an_alias_and_its_folder_share_the_key(tmp_path, tiny_llama_path):
    assert key(tmp_path, "tiny-llama") == key(tmp_path, tiny_llama_path)


def test_a_local_reward_model_is_fingerprinted(tmp_path, model_dir):
    reward_model = shutil.copytree(model_dir, tmp_path / "reward")
    base = key(tmp_path, model_dir, reward="hf", reward_kwargs={"model": str(reward_model)})
    (reward_model / "config.json").write_text("{}")
    assert key(tmp_path, model_dir, reward="hf", reward_kwargs={"model": str(reward_model)}) != base


def test_a_cached_build_is_reused_only_for_the_same_backend(tmp_path, monkeypatch, model_dir):
    """Through build_sentiment_pairs: same inputs reuse the file, another backend generates afresh."""
    from sparsepo.experiments.sentiment import pairs
    from sparsepo.generation import Completion

    calls = []

    class Fake:
        def __init__(self, backend):
            self.backend = backend

        def generate(self, prompts, sampling):
            calls.append(self.backend)
            return [[Completion(f" {self.backend} good"), Completion(" awful")] for _ in prompts]

    monkeypatch.setattr(pairs, "make_generator", lambda backend, model, **kw: Fake(backend))
    build = dict(prompts=["the film was"], max_new_tokens=4, cache_dir=tmp_path / "cache")
    path_hf, rows = pairs.build_sentiment_pairs(str(model_dir), backend="hf", **build)
    assert pairs.build_sentiment_pairs(str(model_dir), backend="hf", **build) == (path_hf, rows)
    path_vllm, rows_vllm = pairs.build_sentiment_pairs(str(model_dir), backend="vllm", **build)
    assert calls == ["hf", "vllm"] and path_vllm != path_hf
    assert rows[0]["chosen"] == " hf good" and rows_vllm[0]["chosen"] == " vllm good"


def test_the_pair_is_the_best_and_worst_of_n_samples_by_vader(tmp_path, monkeypatch, model_dir):
    """n samples per prompt: chosen is the highest VADER score, rejected the lowest (checked against VADER itself);
    blank samples are ignored and a prompt whose samples all score alike gives no pair."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from sparsepo.experiments.sentiment import pairs
    from sparsepo.generation import Completion

    groups = {
        "the film was": [" fine.", " a wonderful, brilliant joy!", "  ", " terrible and awful.", " bad."],
        "i thought": [" it was a table.", " it was a chair.", " it was a door."],  # all neutral: tie
    }

    class Fake:
        def generate(self, prompts, sampling):
            assert sampling.n == 5
            return [[Completion(t) for t in groups[p]] for p in prompts]

    monkeypatch.setattr(pairs, "make_generator", lambda backend, model, **kw: Fake())
    _, rows = pairs.build_sentiment_pairs(str(model_dir), list(groups), n=5, max_new_tokens=4,
                                          cache_dir=tmp_path / "cache")
    vader = SentimentIntensityAnalyzer()
    scores = {t: (vader.polarity_scores("the film was" + t)["compound"] + 1) / 2 for t in groups["the film was"]}
    assert len(rows) == 1 and rows[0]["prompt"] == "the film was"
    assert rows[0]["chosen"] == max((t for t in scores if t.strip()), key=scores.get) == " a wonderful, brilliant joy!"
    assert rows[0]["rejected"] == min((t for t in scores if t.strip()), key=scores.get) == " terrible and awful."
    assert rows[0]["reward_chosen"] == pytest.approx(scores[rows[0]["chosen"]])
    with pytest.raises(ValueError, match="at least 2 samples"):
        pairs.build_sentiment_pairs(str(model_dir), ["x"], n=1, cache_dir=tmp_path / "cache")
