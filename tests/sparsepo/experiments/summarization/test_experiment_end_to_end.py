"""tune/summarization.py end to end on a tiny model through a local Ray instance: the miniature's data, SFT, the
NLI stand-in (a 2-step build), the SFT baseline, a 2-method LoRA sweep with the summarisation suite at two
temperatures, Figure 5 table and figure.

Everything is the real code (tiny-llama samples gibberish, so the values are only checked for range).
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from sparsepo.evaluation.nli_standin import standin_dir, standin_settings
from sparsepo.experiments.summarization.experiment import SummarizationConfig, run_summarization

TINY_STANDIN = {"train_per_label": 8, "test_per_label": 4, "steps": 2, "batch_size": 4}  # seconds, not minutes


@pytest.fixture
def tiny_standin():
    """The tiny stand-in build's settings; its cached folder is removed afterwards."""
    yield TINY_STANDIN
    shutil.rmtree(standin_dir(standin_settings(TINY_STANDIN)), ignore_errors=True)


@pytest.mark.slow
def test_summarization_pipeline_writes_figure5_with_every_method(local_ray, tmp_path, tiny_standin):
    cfg = SummarizationConfig(
        model="tiny-llama", sft_steps=2, sft_docs=4, pair_docs=4, eval_docs=2, methods=("dpo", "sparsepo"),
        steps=2, batch_size=2, lr=1e-3, lora_r=4, temperatures=(0.5, 1.0), eval_n=2, eval_tokens=8,
        storage_path=str(tmp_path), name="summ", nli_standin=tiny_standin,
    )
    logged: list[str] = []
    files = run_summarization(cfg, log=logged.append)
    sft_policy = next((tmp_path / "sft").glob("summarization-sft-*/train/checkpoint_*/policy"))  # SFT ran
    report = files["report"].read_text()
    assert f"SFT model `{sft_policy}`" in report
    table = pd.read_csv(files["table"])
    assert table["Method"].tolist() == ["SFT", "SFT", "dpo", "dpo", "sparsepo", "sparsepo"]
    assert table["Temperature"].tolist() == [0.5, 1.0] * 3
    assert table["ROUGE-L F1"].between(0, 1).all() and table["BERTScore F1"].between(-1, 1).all()
    assert table["self-BLEU"].between(0, 100).all()  # every method was evaluated at every temperature
    assert table["EDNA"].between(0, 1).all()  # the NLI stand-in (default) measured EDNA for every method
    assert "EDNA comes from the offline NLI **stand-in**, not a real NLI model" in report
    assert any(line.startswith("[summarization] nli: stand-in ") for line in logged)
    assert files["figure"].stat().st_size > 10_000  # a PNG with four panels
    assert "| sparsepo | 1 |" in report and "![Figure 5](figure5.png)" in report
    assert any(line.startswith("[summarization] sweep: 2 of 2 trials evaluated") for line in logged)
    # A rerun that resumes reuses the SFT model, the baseline and the finished trials.
    logged.clear()
    again = run_summarization(SummarizationConfig(**{**cfg.__dict__, "resume": True}), log=logged.append)
    assert any(line.startswith("[summarization] sft: cached") for line in logged)
    assert any(line.startswith("[summarization] baseline: cached") for line in logged)
    pd.testing.assert_frame_equal(pd.read_csv(again["table"]), table)
