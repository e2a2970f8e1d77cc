"""Sentiment scorers: a real tiny BERT classifier trained here on Pang & Lee sentences, and VADER."""

from __future__ import annotations

import pytest
import torch

from sparsepo.evaluation.reward_models import (
    DEFAULT_HF_MODEL,
    HFSentimentScorer,
    SentimentScorer,
    VaderScorer,
    make_scorer,
    positive_label_index,
)

POSITIVE_CUES = {"wonderful", "beautiful", "brilliant", "best", "great", "funny", "moving", "delightful"}
NEGATIVE_CUES = {"dull", "boring", "worst", "bad", "mess", "tedious", "awful", "stupid"}
CLEAR_POSITIVE = [
    "a wonderful , beautiful and moving film .",
    "the best and most delightful comedy of the year .",
    "brilliant , funny and great .",
]
CLEAR_NEGATIVE = [
    "a boring , dull and tedious mess .",
    "the worst and most stupid movie of the year .",
    "awful , bad and boring .",
]


def _handful(sentences: list[dict], label: int, cues: set[str], other: set[str], k: int) -> list[str]:
    """The first k sentences of `label` that contain a cue word of their class and none of the other's."""
    picked = [r["text"] for r in sentences if r["label"] == label and set(r["text"].split()) & cues
              and not set(r["text"].split()) & other]  # fmt: skip
    return picked[:k]


def _train_tiny_classifier(out_dir, per_class: int = 64, steps: int = 100, seed: int = 0) -> None:
    """Tiny random BERT + WordPiece tokenizer, trained a few AdamW steps on a handful of Pang & Lee sentences."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from sparsepo.assets import load_sentences

    sentences = load_sentences()
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wp.train_from_iterator([r["text"] for r in sentences],
                           trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials, show_progress=False))  # fmt: skip
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(t, wp.token_to_id(t)) for t in ("[CLS]", "[SEP]")]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=wp, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)  # fmt: skip
    pos = _handful(sentences, 1, POSITIVE_CUES, NEGATIVE_CUES, per_class)
    neg = _handful(sentences, 0, NEGATIVE_CUES, POSITIVE_CUES, per_class)
    assert len(pos) == len(neg) == per_class
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2,
                        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})  # fmt: skip
    model = BertForSequenceClassification(config)
    texts, labels = pos + neg, torch.tensor([1] * len(pos) + [0] * len(neg))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randperm(len(texts))[:16]
        enc = tok([texts[i] for i in idx], padding=True, return_tensors="pt")
        loss = model(**enc, labels=labels[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-sentiment-bert")
    _train_tiny_classifier(out)
    return out


def _relabelled_copy(src, dst, permute: bool, id2label: dict[int, str]):
    """Copy of the classifier at `src` with new label names, its two output rows swapped if `permute`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(src)
    if permute:
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight.flip(0))
            model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.config.id2label = id2label
    model.config.label2id = {v: k for k, v in id2label.items()}
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def test_hf_scorer_orders_clear_sentences_after_training(classifier_dir):
    scorer = make_scorer("hf", model=str(classifier_dir))
    assert isinstance(scorer, SentimentScorer)
    pos, neg = scorer.score(CLEAR_POSITIVE), scorer.score(CLEAR_NEGATIVE)
    assert all(0.0 <= s <= 1.0 for s in pos + neg)
    assert min(pos) > 0.5 > max(neg), (pos, neg)


def test_hf_scorer_batched_equals_manual_softmax_one_by_one(classifier_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = CLEAR_POSITIVE + CLEAR_NEGATIVE + ["ok .", "a long , rambling , sometimes funny but mostly dull film ."]
    batched = HFSentimentScorer(str(classifier_dir), batch_size=4).score(texts)  # padded batches
    tok = AutoTokenizer.from_pretrained(classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    with torch.no_grad():
        manual = [torch.softmax(model(**tok(t, return_tensors="pt")).logits[0], -1)[1].item() for t in texts]
    assert batched == pytest.approx(manual, abs=1e-5)


@pytest.mark.parametrize(
    ("permute", "id2label"),
    [(True, {0: "POSITIVE", 1: "NEGATIVE"}), (False, {0: "LABEL_0", 1: "LABEL_1"}), (False, {0: "neg", 1: "pos"})],
)
def test_hf_scorer_reads_positive_class_from_id2label(classifier_dir, tmp_path, permute, id2label):
    reference = HFSentimentScorer(str(classifier_dir)).score(CLEAR_POSITIVE + CLEAR_NEGATIVE)
    copy = _relabelled_copy(classifier_dir, tmp_path / "relabelled", permute, id2label)
    assert HFSentimentScorer(str(copy)).score(CLEAR_POSITIVE + CLEAR_NEGATIVE) == pytest.approx(reference, abs=1e-6)


def test_positive_label_index_conventions_and_errors():
    assert positive_label_index({0: "NEGATIVE", 1: "POSITIVE"}) == 1
    assert positive_label_index({0: "positive", 1: "negative"}) == 0
    assert positive_label_index({0: "negative", 1: "neutral", 2: "positive"}) == 2
    assert positive_label_index({0: "LABEL_0", 1: "LABEL_1"}) == 1
    assert positive_label_index({0: "bad", 1: "good"}, positive_label="Good") == 1
    with pytest.raises(ValueError, match="positive_label"):
        positive_label_index({0: "bad", 1: "good"})
    with pytest.raises(ValueError, match="not among"):
        positive_label_index({0: "bad", 1: "good"}, positive_label="positive")


def test_vader_orders_clear_sentences_and_rescales_compound():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    scorer = make_scorer("vader")
    assert isinstance(scorer, VaderScorer)
    texts = CLEAR_POSITIVE + CLEAR_NEGATIVE + ["the film is ninety minutes long ."]
    scores = scorer.score(texts)
    assert min(scores[:3]) > 0.5 > max(scores[3:6])
    analyzer = SentimentIntensityAnalyzer()
    assert scores == pytest.approx([(analyzer.polarity_scores(t)["compound"] + 1) / 2 for t in texts])
    assert scores[-1] == pytest.approx(0.5)  # no sentiment words: compound 0


def test_scorer_registry_and_input_errors():
    with pytest.raises(ValueError, match="unknown sentiment scorer 'nope'.*hf, vader"):
        make_scorer("nope")
    assert HFSentimentScorer().model_path == DEFAULT_HF_MODEL  # lazy: nothing is downloaded
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        make_scorer("vader").score(["fine", 3])
    assert make_scorer("vader").score([]) == []
