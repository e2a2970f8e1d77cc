"""Figure 5's measurements: the summarisation suite at several temperatures, inside training or on the driver.

:class:`SummarizationEvaluator` runs :func:`sparsepo.evaluation.summarization.evaluate_summarization` (``n`` nucleus
samples per evaluation document at each temperature; ROUGE-L F1, BERTScore F1, self-BLEU and, given an NLI
model, EDNA) and reports each metric's mean over documents and its 95% bootstrap CI as
``eval/<metric>@<temperature>`` and ``eval/<metric>@<temperature>/ci_low|ci_high`` (:func:`metric_key`).
Offline, EDNA's NLI model is the stand-in of :mod:`sparsepo.evaluation.nli_standin` (``"standin"``); without an NLI
model (``None``/``"none"``) EDNA is not measured and its cells stay empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import nn

from sparsepo.evaluation.summarization import DEFAULT_PROMPT_TEMPLATE, BERTScore, evaluate_summarization
from sparsepo.generation import Generator

# Figure 5's panels: suite metric -> column / axis label (ROUGE-L, BERTScore, EDNA in [0, 1]; self-BLEU in [0, 100]).
FIGURE5_METRICS: dict[str, str] = {
    "rougeL_f1": "ROUGE-L F1",
    "bertscore_f1": "BERTScore F1",
    "self_bleu": "self-BLEU",
    "edna": "EDNA",
}


def metric_key(metric: str, temperature: float) -> str:
    """``rougeL_f1@0.25``: one metric at one sampling temperature (reported with an ``eval/`` prefix)."""
    return f"{metric}@{float(temperature):g}"


def tidy_to_metrics(tidy: pd.DataFrame) -> dict[str, float]:
    """The suite's tidy table -> ``{metric_key: mean, metric_key/ci_low: ..., metric_key/ci_high: ...}``."""
    out: dict[str, float] = {}
    for row in tidy.itertuples(index=False):
        key = metric_key(row.metric, float(str(row.setting).removeprefix("temperature=")))
        out.update({key: float(row.value), f"{key}/ci_low": float(row.ci_low), f"{key}/ci_high": float(row.ci_high)})
    return out


class SummarizationEvaluator:
    """In-training evaluator (``run.evaluator="sparsepo.experiments.summarization.evaluation:SummarizationEvaluator"``)
    and the driver's evaluation of the SFT model (:meth:`evaluate` with any generator).

    ``documents``/``references``: the evaluation set (texts, same length); ``nli_model``: hub name, folder, storage
    URI or ``"standin"`` of the NLI model for EDNA (None, "" or "none": EDNA skipped); ``bertscore``: :class:`BERTScore` arguments (``{}``: the offline
    MiniLM; None: skipped). Scorers load once, when the evaluator is built.
    """

    def __init__(self, documents: Sequence[str], references: Sequence[str], temperatures: Sequence[float],
                 n: int = 5, top_p: float = 0.5, max_new_tokens: int = 48, seed: int = 0,
                 prompt_template: str = DEFAULT_PROMPT_TEMPLATE, bertscore: dict[str, Any] | None = None,
                 nli_model: str | None = None, batch_size: int = 8, n_resamples: int = 1000):
        from sparsepo.evaluation.edna import EdnaScorer
        from sparsepo.evaluation.nli_standin import nli_model_or_none

        self.documents, self.references = list(documents), list(references)
        self.kw = {"temperatures": [float(t) for t in temperatures], "n": n, "top_p": top_p,
                   "max_new_tokens": max_new_tokens, "seed": seed, "prompt_template": prompt_template,
                   "n_resamples": n_resamples}
        self.bertscore = BERTScore(**bertscore) if bertscore is not None else False
        nli_model = nli_model_or_none(nli_model)
        self.edna = EdnaScorer(nli_model) if nli_model else None
        self.batch_size = batch_size

    def evaluate(self, generator: Generator) -> dict[str, float]:
        """``{metric_key: value, .../ci_low, .../ci_high}`` of ``generator``'s samples."""
        tidy = evaluate_summarization(generator, self.documents, self.references, bertscore=self.bertscore,
                                      edna=self.edna, **self.kw)
        return tidy_to_metrics(tidy)

    def __call__(self, policy: nn.Module, ref: Any, tokenizer: Any, step: int) -> dict[str, float]:
        from sparsepo.generation.hf import HFGenerator

        was_training = policy.training
        policy.eval()
        try:
            metrics = self.evaluate(HFGenerator.from_model(policy, tokenizer, batch_size=self.batch_size))
        finally:
            policy.train(was_training)
        return {f"eval/{k}": v for k, v in metrics.items()}


def figure5_table(rows: dict[str, dict[str, float]], temperatures: Sequence[float]) -> pd.DataFrame:
    """Figure 5 as a table: one row per method x temperature (methods in ``rows`` order), a column per panel
    (:data:`FIGURE5_METRICS`) and its CI bounds; an unmeasured metric (EDNA without an NLI model) is empty."""
    records = []
    for method, metrics in rows.items():
        for t in temperatures:
            rec: dict[str, Any] = {"Method": method, "Temperature": float(t)}
            for metric, label in FIGURE5_METRICS.items():
                key = metric_key(metric, t)
                rec[label] = metrics.get(key)
                rec[f"{label} CI low"] = metrics.get(f"{key}/ci_low")
                rec[f"{label} CI high"] = metrics.get(f"{key}/ci_high")
            records.append(rec)
    return pd.DataFrame(records)
