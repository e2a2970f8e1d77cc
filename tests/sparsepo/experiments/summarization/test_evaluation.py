"""Figure 5's measurements and layout: metric names, the evaluator on a canned generator, the table and figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from sparsepo.experiments.summarization.evaluation import (
    FIGURE5_METRICS,
    SummarizationEvaluator,
    figure5_table,
    metric_key,
)
from sparsepo.experiments.summarization.report import figure5, write_report
from sparsepo.generation import Completion, SamplingConfig

DOCS = ["the film is long . the actors are good .", "a dull sequel . nothing new here ."]
REFS = ["the film is long .", "a dull sequel ."]
SAMPLES = {0: ["the film is long and good", "actors are good"], 1: ["a dull sequel", "a dull sequel"]}


class Canned:
    """Fixed samples per document, whatever the temperature."""

    name = "canned"

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        assert all(p.endswith("\nTL;DR:") for p in prompts) and sampling.n == 2
        return [[Completion(s, finish_reason="stop") for s in SAMPLES[i]] for i in range(len(prompts))]


def test_evaluator_reports_every_metric_at_every_temperature_against_independent_scores():
    ev = SummarizationEvaluator(DOCS, REFS, temperatures=(0.5, 1.0), n=2, bertscore=None, n_resamples=200)
    metrics = ev.evaluate(Canned())
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = np.mean([np.mean([scorer.score(REFS[i], s)["rougeL"].fmeasure for s in SAMPLES[i]]) for i in (0, 1)])
    sb0 = np.mean([sacrebleu.sentence_bleu(a, [b]).score for a, b in [SAMPLES[0], SAMPLES[0][::-1]]])
    for t in (0.5, 1.0):
        assert metrics[metric_key("rougeL_f1", t)] == pytest.approx(rouge)
        assert metrics[metric_key("self_bleu", t)] == pytest.approx((sb0 + 100.0) / 2)  # identical samples: 100
        assert metrics[f"{metric_key('self_bleu', t)}/ci_low"] <= metrics[metric_key("self_bleu", t)]
    assert not any(k.startswith(("bertscore", "edna")) for k in metrics)  # skipped scorers report nothing


def test_figure5_table_layout_leaves_unmeasured_metrics_empty():
    rows = {"SFT": {metric_key("rougeL_f1", 0.5): 0.2, metric_key("self_bleu", 0.5): 40.0},
            "sparsepo": {metric_key("rougeL_f1", 0.5): 0.3, f"{metric_key('rougeL_f1', 0.5)}/ci_low": 0.25}}
    table = figure5_table(rows, (0.5, 1.0))
    assert table["Method"].tolist() == ["SFT", "SFT", "sparsepo", "sparsepo"]
    assert table["Temperature"].tolist() == [0.5, 1.0, 0.5, 1.0]
    assert list(table.columns[2::3]) == list(FIGURE5_METRICS.values())
    assert table.loc[2, "ROUGE-L F1"] == 0.3 and table.loc[2, "ROUGE-L F1 CI low"] == 0.25
    assert table["EDNA"].isna().all() and pd.isna(table.loc[1, "ROUGE-L F1"])


def test_figure5_plots_each_metric_against_temperature_per_method(tmp_path):
    rows = {m: {metric_key(k, t): v + t for k in FIGURE5_METRICS if k != "edna" for t in (0.25, 1.0)}
            for m, v in (("SFT", 0.1), ("dpo", 0.2))}
    table = figure5_table(rows, (0.25, 1.0))
    fig = figure5(table)
    axes = fig.axes
    assert [ax.get_title().split(" (")[0] for ax in axes] == list(FIGURE5_METRICS.values())
    assert [c.get_label() for c in axes[0].containers] == ["SFT", "dpo"]  # one error-bar line per method
    lines = [c.lines[0] for c in axes[0].containers]
    assert [tuple(line.get_xdata()) for line in lines] == [(0.25, 1.0)] * 2
    assert [tuple(np.round(line.get_ydata(), 6)) for line in lines] == [(0.35, 1.1), (0.45, 1.2)]
    assert not axes[3].get_lines() and "not measured" in [t.get_text() for t in axes[3].texts]
    files = write_report(tmp_path, table, title="t", intro="i", data={"pairs": 3}, settings={"seed": 0})
    assert files["figure"].read_bytes()[:4] == b"\x89PNG"
    report = files["report"].read_text()
    assert "| dpo | 0.25 | 0.45 |" in report and "- pairs: 3" in report and "CI low" not in report
