"""tune/dialogue.py end to end on a tiny model through a local Ray instance: offline HH-format dialogues, SFT on the
chosen responses, a 2-method sweep, the leaderboard suite (local lm-eval tasks) on every final checkpoint, Table 1.

Every stage is the real code on ``tiny-llama``; its scores are those of a random model, so the test checks the
table's layout and that each row was measured, not the values.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sparsepo.experiments.dialogue.experiment import DialogueConfig, run_dialogue

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.slow
def test_dialogue_pipeline_writes_table1_with_every_method(local_ray, tmp_path):
    cfg = DialogueConfig(model="tiny-llama", sft_examples=4, train_pairs=4, sft_steps=2, methods=("dpo", "sparsepo"),
                         steps=2, batch_size=2, max_length=192, max_prompt_length=128, eval_limit=2,
                         storage_path=str(tmp_path), name="dialogue")
    logged: list[str] = []
    files = run_dialogue(cfg, log=logged.append)
    sft_policy = next((tmp_path / "sft").glob("dialogue-sft-*/train/checkpoint_*/policy"))  # the SFT stage ran
    report = files["report"].read_text()
    assert f"SFT model `{sft_policy}` (first row)" in report
    table = pd.read_csv(files["table"])
    assert table["Method"].tolist() == ["SFT", "dpo", "sparsepo"]
    columns = ["MC", "Gen", "IFEval Inst.", "IFEval Prompt", "Average"]
    assert table.columns.tolist() == ["Method", *columns, *(f"{c} CI {end}" for c in columns for end in ("low", "high"))]
    assert table.drop(columns="Method").apply(lambda c: c.between(0, 100)).all().all()  # every cell measured
    for c in columns:  # the bootstrap interval over documents holds each score
        assert (table[f"{c} CI low"] <= table[c] + 1e-9).all() and (table[c] <= table[f"{c} CI high"] + 1e-9).all()
    evals = sorted((tmp_path / "evals").glob("openllm-*/results.json"))
    assert len(evals) == 3  # one leaderboard evaluation per model: SFT and each method's final checkpoint
    assert "| SFT |" in report and "| sparsepo |" in report and "## Settings" in report
    # A rerun that resumes reuses every cached stage and evaluation and writes the same table.
    logged.clear()
    again = run_dialogue(DialogueConfig(**{**cfg.__dict__, "resume": True}), log=logged.append)
    assert any(line.startswith("[dialogue] sft: cached") for line in logged)
    assert sum("leaderboard:" in line and ": cached" in line for line in logged) == 3
    pd.testing.assert_frame_equal(pd.read_csv(again["table"]), table)


def test_shim_is_the_dialogue_command():
    out = subprocess.run([sys.executable, str(ROOT / "tune" / "dialogue.py"), "--help"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    assert "paper 3.3, Table 1" in out and "--eval-limit" in out and "--paper" in out
