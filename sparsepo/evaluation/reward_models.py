"""Sentiment reward scorers: P(positive | text) in [0, 1] for a batch of texts (paper 3.2's ground-truth reward).

Registered by name (:func:`make_scorer`):

- ``hf``: a Hugging Face sequence-classification model, by hub name or local folder; default the paper's
  ``siebert/sentiment-roberta-large-english``. The score is the softmax probability of the class whose
  ``config.id2label`` name means "positive" (see :func:`positive_label_index`), or the sigmoid of the
  single logit of a one-output model.
- ``vader``: the VADER lexicon scorer (``vaderSentiment``, fully offline). VADER's compound score lies in
  [-1, 1]; the score here is ``(compound + 1) / 2``, a monotone rescaling, *not* a calibrated probability:
  0.5 means neutral, and texts are ordered exactly as by their compound score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

DEFAULT_HF_MODEL = "siebert/sentiment-roberta-large-english"


@runtime_checkable
class SentimentScorer(Protocol):
    """``score(texts)[i]`` is P(positive | texts[i]) in [0, 1]."""

    name: str

    def score(self, texts: list[str]) -> list[float]: ...


def _check_texts(texts: list[str]) -> None:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"sentiment scorer: texts[{i}] is {type(t).__name__}, expected str")


_POSITIVE = ("positive", "pos")
_GENERIC = ("label_0", "label_1")


def positive_label_index(id2label: Mapping[int, str], positive_label: str | None = None) -> int:
    """Class index meaning "positive" in a classifier's ``id2label``.

    ``positive_label`` names it explicitly (case-insensitive). Otherwise the one label equal to or starting
    with "pos" (POSITIVE, positive, pos, Pos.) is taken; a two-class model with the generic names
    LABEL_0 / LABEL_1 follows the SST-2 / IMDB convention that 1 is positive.
    """
    labels = {int(i): str(name).strip().lower() for i, name in id2label.items()}
    if positive_label is not None:
        hits = [i for i, name in labels.items() if name == positive_label.strip().lower()]
        if not hits:
            raise ValueError(f"positive_label {positive_label!r} is not among the model's labels {dict(id2label)}")
        return hits[0]
    hits = [i for i, name in labels.items() if name in _POSITIVE or name.startswith("pos")]
    if len(hits) == 1:
        return hits[0]
    if sorted(labels.values()) == list(_GENERIC):
        return next(i for i, name in labels.items() if name == "label_1")
    raise ValueError(
        f"cannot tell which label is positive in id2label={dict(id2label)}; pass positive_label=<name>"
    )


class HFSentimentScorer:
    """A sequence-classification model scoring texts in batches (longest-first padding, truncation).

    Args:
        model: hub name or local folder (with its tokenizer).
        batch_size: texts per forward pass.
        max_length: tokens kept per text (truncated beyond; also capped by the tokenizer's limit).
        device: default ``cuda`` when available, else ``cpu``.
        positive_label: name of the positive class when the labels are not self-explanatory.
    """

    name = "hf"

    def __init__(
        self,
        model: str = DEFAULT_HF_MODEL,
        *,
        batch_size: int = 32,
        max_length: int = 512,
        device: str | None = None,
        positive_label: str | None = None,
    ) -> None:
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.positive_label = positive_label
        self._model = None
        self._tokenizer = None
        self._positive = -1

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForSequenceClassification.from_pretrained(self.model_path)
            if model.config.num_labels > 1:
                self._positive = positive_label_index(model.config.id2label, self.positive_label)
            self._model, self._tokenizer = model.to(self.device).eval(), tok
        return self._model, self._tokenizer

    def score(self, texts: list[str]) -> list[float]:
        """P(positive) per text, shape (len(texts),), in input order."""
        import torch

        _check_texts(texts)
        if not texts:
            return []
        model, tok = self._load()
        limit = min(self.max_length, tok.model_max_length or self.max_length)
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                enc = tok(batch, padding=True, truncation=True, max_length=limit, return_tensors="pt")
                logits = model(**enc.to(self.device)).logits.float()  # (batch, num_labels)
                if logits.shape[-1] == 1:
                    probs = torch.sigmoid(logits[:, 0])
                else:
                    probs = torch.softmax(logits, dim=-1)[:, self._positive]
                scores.extend(probs.tolist())
        return scores

    def close(self) -> None:
        self._model = self._tokenizer = None


class VaderScorer:
    """VADER compound score mapped to [0, 1] as ``(compound + 1) / 2`` (see module docstring)."""

    name = "vader"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, texts: list[str]) -> list[float]:
        """Rescaled compound score per text, shape (len(texts),), in input order."""
        _check_texts(texts)
        return [(self._analyzer.polarity_scores(t)["compound"] + 1.0) / 2.0 for t in texts]


_SCORERS: dict[str, Callable[..., SentimentScorer]] = {"hf": HFSentimentScorer, "vader": VaderScorer}


def register_scorer(name: str, factory: Callable[..., SentimentScorer]) -> None:
    """Register a scorer factory ``(**kw) -> SentimentScorer`` under ``name``."""
    _SCORERS[name] = factory


def available_scorers() -> list[str]:
    return sorted(_SCORERS)


def make_scorer(name: str, **kw) -> SentimentScorer:
    """Build the scorer registered as ``name`` (``hf`` takes ``model=`` and the options of
    :class:`HFSentimentScorer`; ``vader`` takes none)."""
    if name not in _SCORERS:
        raise ValueError(f"unknown sentiment scorer {name!r}; choose one of {', '.join(available_scorers())}")
    return _SCORERS[name](**kw)
