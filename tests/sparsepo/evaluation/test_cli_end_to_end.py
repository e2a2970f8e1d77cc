"""evals/run.py end to end on a tiny model: sentiment and code suites write samples, tidy tables, Markdown."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "evals/run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_sentiment_and_code_suites_then_compare(tmp_path):
    s = run("--suite", "sentiment", "--model", "tiny-llama", "--n-prompts", "3", "--max-new-tokens", "6",
            "--out", str(tmp_path / "sent"))
    assert s.returncode == 0, s.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sent" / "results.csv")
    assert set(table["metric"]) == {"reward", "kl", "kl_mc"}
    kl = table.set_index("metric").loc["kl", "value"]
    assert kl == pytest.approx(0.0, abs=1e-9)  # --ref defaults to the model itself
    samples = pd.read_json(tmp_path / "sent" / "samples.jsonl", lines=True)
    assert len(samples) == 3 and (tmp_path / "sent" / "results.md").exists()

    c = run("--suite", "code", "--model", "tiny-llama", "--limit", "2", "--n-samples", "2", "--ks", "1", "2",
            "--max-new-tokens", "8", "--out", str(tmp_path / "code"))
    assert c.returncode == 0, c.stderr[-3000:]
    code = pd.read_csv(tmp_path / "code" / "results.csv")
    assert set(code["metric"]) == {"pass@1", "pass@2"} and (code["n"] == 2).all()
    assert len(pd.read_json(tmp_path / "code" / "samples.jsonl", lines=True)) == 4

    cmp = run("--compare", str(tmp_path / "sent"), str(tmp_path / "code"))
    assert cmp.returncode == 0 and "reward" in cmp.stdout and "pass@1" in cmp.stdout


def test_bad_input_gives_clear_errors(tmp_path):
    missing = run("--suite", "sentiment", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x"))
    assert missing.returncode != 0 and "nope" in missing.stderr
    unknown = run("--suite", "poetry", "--model", "tiny-llama")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
