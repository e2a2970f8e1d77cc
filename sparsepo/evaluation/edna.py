"""EDNA: entailment-based faithfulness and diversity of a set of sampled summaries.

Reference: Shashi Narayan, Gonçalo Simões, Yao Zhao, Joshua Maynez, Dipanjan Das, Michael Collins
and Mirella Lapata. 2022. "A Well-Composed Text is Half Done! Composition Sampling for Diverse
Conditional Generation". ACL 2022 (2022.acl-long.94; arXiv:2203.15108). There, EDNA ("Evaluating
Diversity aNd fAithfulness") is the harmonic mean of

* **Ent** -- entailment of each sampled summary by its input document (faithfulness), and
* **1 - Self-Ent** -- where Self-Ent is the entailment of each sample by the *other* samples of the
  same input (their redundancy; 1 - Self-Ent is the diversity),

so EDNA = 2 * Ent * (1 - SelfEnt) / (Ent + 1 - SelfEnt), in [0, 1], higher = more faithful and
more diverse. The SparsePO paper (Appendix B.3) computes the entailments "via the SummaC framework"
(Laban et al., 2022), whose default NLI model is ``tals/albert-xlarge-vitaminc-mnli``.

How entailment of a text pair is scored here (SummaC zero-shot style, entailment probability only so
that scores stay in [0, 1]): the premise is split into units (sentences by default), the hypothesis
into sentences; the NLI model gives P(entailment | unit_i, sentence_j) for every pair; each
hypothesis sentence keeps its best-supporting unit (max over i) and the pair's score is the mean
over hypothesis sentences (:func:`summac_zs_aggregate`).

Per input (document d, samples s_1..s_n, n >= 2):
  Ent(d) = mean_i score(d, s_i);  SelfEnt(d) = mean over ordered pairs i != j of score(s_i, s_j);
  EDNA(d) = :func:`edna_score` (Ent(d), SelfEnt(d)).
Suites average EDNA(d) over inputs (so it can be bootstrapped over inputs); the corpus-level variant
``edna_score(mean Ent, mean SelfEnt)`` is one call away.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import punkt
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

DEFAULT_NLI_MODEL = "tals/albert-xlarge-vitaminc-mnli"

# Label names meaning "premise entails hypothesis" across common NLI / fact-verification heads
# (MNLI: "entailment"; VitaminC/FEVER: "SUPPORTS"). Compared after lower-casing and mapping _/- to
# spaces, exactly, so "not_entailment" never matches.
_ENTAILMENT_NAMES = {"entailment", "entails", "entailed", "entail", "supports", "support", "supported"}
# Heads whose config only says LABEL_0.. : index from the SummaC model table.
_KNOWN_ENTAILMENT_INDEX = {
    "tals/albert-xlarge-vitaminc-mnli": 0,
    "tals/albert-base-vitaminc-mnli": 0,
    "tals/albert-xlarge-vitaminc": 0,
}

Granularity = Literal["sentence", "paragraph", "document"]


def edna_score(entailment: float | np.ndarray, self_entailment: float | np.ndarray) -> float | np.ndarray:
    """Harmonic mean of ``entailment`` and ``1 - self_entailment`` (both probabilities in [0, 1]).

    Elementwise for arrays; 0 where both terms are 0 (the harmonic-mean limit).
    """
    e = np.asarray(entailment, dtype=float)
    s = np.asarray(self_entailment, dtype=float)
    for name, arr in (("entailment", e), ("self_entailment", s)):
        if np.any((arr < 0) | (arr > 1)) or not np.all(np.isfinite(arr)):
            raise ValueError(f"edna_score: {name} must be in [0, 1], got {arr}")
    diversity = 1.0 - s
    denom = e + diversity
    out = np.where(denom > 0, 2.0 * e * diversity / np.where(denom > 0, denom, 1.0), 0.0)
    return float(out) if out.ndim == 0 else out


def summac_zs_aggregate(probs: np.ndarray) -> float:
    """SummaC-ZS pooling of an entailment matrix of shape (n_premise_units, n_hypothesis_sentences):
    max over premise units, then mean over hypothesis sentences."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or 0 in probs.shape:
        raise ValueError(f"summac_zs_aggregate: expected a non-empty 2-D matrix, got shape {probs.shape}")
    return float(probs.max(axis=0).mean())


def split_text(text: str, granularity: Granularity = "sentence") -> list[str]:
    """Units of ``text``: Punkt sentences, blank-line paragraphs, or the whole text.

    Never empty: a blank text is one empty unit, so every pair still gets an NLI score.
    """
    text = text.strip()
    if granularity == "document":
        units = [text]
    elif granularity == "paragraph":
        units = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    elif granularity == "sentence":
        units = [s.strip() for s in punkt.sent_tokenize(text) if s.strip()]
    else:
        raise ValueError(f"granularity must be sentence, paragraph or document, got {granularity!r}")
    return units or [text]


def find_entailment_index(id2label: Mapping[int | str, str], model_name: str = "") -> int:
    """Index of the "entailment" class in a classifier's ``config.id2label``.

    Matches label names such as ``entailment``/``ENTAILMENT``/``SUPPORTS``; falls back to a table of
    known models whose configs carry only generic ``LABEL_k`` names; otherwise raises, naming labels.
    """
    hits = [int(k) for k, v in id2label.items() if re.sub(r"[_\-]", " ", str(v).strip().lower()) in _ENTAILMENT_NAMES]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ValueError(f"{model_name or 'NLI model'}: several labels look like entailment: {dict(id2label)}")
    key = str(model_name).rstrip("/")
    if key in _KNOWN_ENTAILMENT_INDEX:
        return _KNOWN_ENTAILMENT_INDEX[key]
    raise ValueError(
        f"{model_name or 'NLI model'}: no entailment label in id2label={dict(id2label)}; "
        "pass entailment_index= explicitly"
    )


class NLIModel:
    """A sequence-pair classifier giving P(entailment | premise, hypothesis).

    ``model`` is a hub name, a local folder (``AutoModelForSequenceClassification`` + tokenizer), a storage URI
    (copied to this node once), or ``"standin"``: the offline NLI stand-in (:mod:`sparsepo.evaluation.nli_standin`,
    built and cached on first use; a MiniLM trained on synthetic pairs, not a real NLI model).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_NLI_MODEL,
        *,
        entailment_index: int | None = None,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int = 512,
    ) -> None:
        from sparsepo.evaluation.nli_standin import resolve_nli_model

        self.name = str(model)
        self.path = resolve_nli_model(self.name)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path).to(self.device).eval()
        id2label = self.model.config.id2label
        if entailment_index is None:
            entailment_index = find_entailment_index(id2label, self.name)
        if not 0 <= entailment_index < self.model.config.num_labels:
            raise ValueError(f"{self.name}: entailment_index {entailment_index} outside {dict(id2label)}")
        self.entailment_index = entailment_index

    @torch.no_grad()
    def entailment_probs(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        """P(entailment) for each (premises[k], hypotheses[k]); shape (N,), values in [0, 1]."""
        if len(premises) != len(hypotheses):
            raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")
        out = np.empty(len(premises), dtype=float)
        # Similar lengths per batch: less padding.
        order = sorted(range(len(premises)), key=lambda k: len(premises[k]) + len(hypotheses[k]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer(
                [premises[k] for k in idx],
                [hypotheses[k] for k in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            logits = self.model(**enc).logits.float()
            out[idx] = torch.softmax(logits, dim=-1)[:, self.entailment_index].cpu().numpy()
        return np.clip(out, 0.0, 1.0)  # float32 softmax can overshoot 1 by an ulp


@dataclass(frozen=True)
class EdnaResult:
    """EDNA of one input: ``entailment`` = Ent(d), ``self_entailment`` = SelfEnt(d), ``edna`` = their
    harmonic combination; ``sample_entailment[i]`` = score(d, s_i)."""

    entailment: float
    self_entailment: float
    edna: float
    sample_entailment: tuple[float, ...]


class EdnaScorer:
    """Scores documents and their sampled summaries with an :class:`NLIModel` (see module docstring); ``nli``: a
    model, or a name/folder/``"standin"`` as :class:`NLIModel` takes."""

    def __init__(
        self,
        nli: NLIModel | str | os.PathLike[str] = DEFAULT_NLI_MODEL,
        *,
        premise_granularity: Granularity = "sentence",
        **nli_kwargs: object,
    ) -> None:
        self.nli = nli if isinstance(nli, NLIModel) else NLIModel(nli, **nli_kwargs)  # type: ignore[arg-type]
        self.premise_granularity = premise_granularity

    def pair_scores(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """SummaC-ZS entailment score of each (premise, hypothesis) text pair; shape (len(pairs),).

        All unit pairs go to the NLI model in one batched pass; repeated unit pairs run once.
        """
        unit_pairs: dict[tuple[str, str], int] = {}
        layouts = []
        for premise, hypothesis in pairs:
            p_units = split_text(premise, self.premise_granularity)
            h_units = split_text(hypothesis, "sentence")
            grid = [[unit_pairs.setdefault((p, h), len(unit_pairs)) for h in h_units] for p in p_units]
            layouts.append(np.array(grid, dtype=int))
        keys = list(unit_pairs)
        probs = self.nli.entailment_probs([k[0] for k in keys], [k[1] for k in keys]) if keys else np.array([])
        return np.array([summac_zs_aggregate(probs[grid]) for grid in layouts])

    def score_many(self, documents: Sequence[str], samples: Sequence[Sequence[str]]) -> list[EdnaResult]:
        """EDNA of each document with its samples (``samples[k]``: >= 2 summaries of ``documents[k]``)."""
        if len(documents) != len(samples):
            raise ValueError(f"{len(documents)} documents but {len(samples)} sample lists")
        pairs: list[tuple[str, str]] = []
        spans = []
        for k, (doc, summaries) in enumerate(zip(documents, samples, strict=True)):
            if len(summaries) < 2:
                raise ValueError(f"document {k}: EDNA needs >= 2 samples for self-entailment, got {len(summaries)}")
            ent = [(doc, s) for s in summaries]
            self_ent = [(a, b) for i, a in enumerate(summaries) for j, b in enumerate(summaries) if i != j]
            spans.append((len(pairs), len(ent), len(self_ent)))
            pairs += ent + self_ent
        scores = self.pair_scores(pairs)
        results = []
        for start, n_ent, n_self in spans:
            ent = scores[start : start + n_ent]
            self_ent = float(scores[start + n_ent : start + n_ent + n_self].mean())
            results.append(EdnaResult(float(ent.mean()), self_ent, float(edna_score(ent.mean(), self_ent)),
                                      tuple(float(x) for x in ent)))
        return results

    def score(self, document: str, samples: Sequence[str]) -> EdnaResult:
        """EDNA of one document and its >= 2 sampled summaries."""
        return self.score_many([document], [samples])[0]
