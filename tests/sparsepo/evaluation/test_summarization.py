"""Summarisation metrics by hand, and the suite end to end (scripted and real tiny generators)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import sacrebleu
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from sparsepo.evaluation.edna import EdnaScorer
from sparsepo.evaluation.report import TIDY_COLUMNS, read_records
from sparsepo.evaluation.summarization import (
    BERTScore,
    default_bertscore_model,
    evaluate_summarization,
    rouge_l_f1,
    self_bleu,
)
from sparsepo.generation import Completion, SamplingConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCS = [
    "I lent my car to my brother and he returned it with an empty tank. Should I ask him to pay?",
    "My landlord has not fixed the heating for three weeks. It is freezing in my flat.",
    "I got a job offer in another city but my partner does not want to move there.",
]
REFS = [
    "Brother returned my car with an empty tank.",
    "Landlord will not fix the heating.",
    "Partner does not want to move for my new job.",
]


# --------------------------------------------------------------------------- metrics by hand


def test_rouge_l_matches_hand_computed_lcs():
    # the cat sat on the mat / the cat is on the mat: LCS = the cat on the mat (5 of 6 each side).
    # a b c d e / a x c y e: LCS = a c e (3 of 5) -> P = R = F = 0.6.
    # reordered: "mat the on" vs "the mat on": LCS 2 of 3 -> F = 2/3.
    got = rouge_l_f1(
        ["the cat sat on the mat", "a b c d e", "mat the on", "nothing shared"],
        ["The cat is on the mat.", "a x c y e", "the mat on", "at all here"],
    )
    np.testing.assert_allclose(got, [5 / 6, 0.6, 2 / 3, 0.0])


def test_rouge_l_uses_stemming():
    # Stems: [run, dog] vs [the, dog, run]: LCS = 1, P = 1/2, R = 1/3, F = 2PR/(P+R) = 0.4.
    assert rouge_l_f1(["running dogs"], ["the dog runs"])[0] == pytest.approx(0.4)
    assert rouge_l_f1(["running dogs"], ["the dog runs"], use_stemmer=False)[0] == 0.0


def test_self_bleu_hand_checked():
    assert self_bleu(["the cat sat on the mat"] * 3) == pytest.approx(100.0)
    assert self_bleu(["alpha beta gamma delta", "one two three four", "red green blue yellow"]) == 0.0
    # Two identical samples each score 100 against the pair, the disjoint one 0: mean 200/3.
    assert self_bleu(["a b c d e", "a b c d e", "v w x y z"]) == pytest.approx(200 / 3)
    # Matches sacrebleu called directly with the leave-one-out references.
    s = ["my car is out of fuel", "the car has no fuel left", "brother took my car"]
    expected = np.mean([sacrebleu.sentence_bleu(s[i], [r for j, r in enumerate(s) if j != i]).score for i in range(3)])
    assert self_bleu(s) == pytest.approx(expected)
    assert 0.0 < self_bleu(s) < 100.0
    with pytest.raises(ValueError, match=">= 2 samples"):
        self_bleu(["one"])


@pytest.fixture(scope="module")
def bertscore() -> BERTScore:
    return BERTScore(device="cpu")


def test_bertscore_identical_and_paraphrase_ordering(bertscore):
    ref = "The cat sat on the mat."
    f1 = bertscore([ref, "A cat was sitting on the mat.", "Stock markets fell sharply on Tuesday."], [ref] * 3)
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert f1[0] > f1[1] > f1[2]
    assert bertscore.num_layers == 6 and bertscore.model == default_bertscore_model()[0]
    # Blank text has nothing to match: F1 = 0, and the other pairs are unaffected.
    mixed = bertscore(["", ref, "A cat was sitting on the mat.", "cat"], [ref, ref, ref, "  "])
    np.testing.assert_allclose(mixed, [0.0, f1[0], f1[1], 0.0], atol=1e-5)


def test_bertscore_idf_and_layer_options():
    path, _ = default_bertscore_model()
    cands, refs = ["the heating is broken again"], ["landlord will not fix the heating"]
    plain = BERTScore(path, num_layers=6, device="cpu")(cands, refs)
    idf = BERTScore(path, num_layers=6, idf=True, idf_sentences=REFS + DOCS, device="cpu")
    shallow = BERTScore(path, num_layers=2, device="cpu")(cands, refs)
    assert idf(refs, refs)[0] == pytest.approx(1.0, abs=1e-4)
    assert abs(idf(cands, refs)[0] - plain[0]) > 1e-4
    assert abs(shallow[0] - plain[0]) > 1e-4
    with pytest.raises(ValueError, match="num_layers is required"):
        BERTScore(path)


# --------------------------------------------------------------------------- the suite


class ScriptedGenerator:
    """Stand-in generator with fixed outputs (so metric values are known): at temperature <= 0.5 it
    returns the document's reference n times, above that n mutually disjoint made-up summaries."""

    name = "scripted"

    def __init__(self, fail_above: float | None = None) -> None:
        self.calls: list[float] = []
        self.fail_above = fail_above

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        if self.fail_above is not None and sampling.temperature > self.fail_above:
            raise RuntimeError("simulated crash")
        self.calls.append(sampling.temperature)
        assert sampling.top_p == 0.5 and all(p.endswith("\nTL;DR:") for p in prompts)
        out = []
        for p in prompts:
            ref = REFS[[d + "\nTL;DR:" for d in DOCS].index(p)]
            if sampling.temperature <= 0.5:
                out.append([Completion(" " + ref) for _ in range(sampling.n)])
            else:
                out.append([Completion(f"zz{j}a zz{j}b zz{j}c zz{j}d") for j in range(sampling.n)])
        return out


def _row(table: pd.DataFrame, metric: str, temperature: float) -> pd.Series:
    return table[(table["metric"] == metric) & (table["setting"] == f"temperature={temperature}")].iloc[0]


def test_evaluate_summarization_scripted_generator(bertscore, tmp_path):
    gen = ScriptedGenerator()
    table = evaluate_summarization(gen, DOCS, REFS, temperatures=(0.25, 1.0), n=3, bertscore=bertscore,
                                   out_dir=tmp_path, n_resamples=200)
    assert list(table.columns) == TIDY_COLUMNS
    assert set(table["system"]) == {"scripted"} and set(table["suite"]) == {"summarization"}
    assert len(table) == 3 * 2  # rougeL, bertscore, self-BLEU x 2 temperatures (no EDNA scorer given)
    assert (table["n"] == 3).all()
    exact = _row(table, "rougeL_f1", 0.25)
    assert (exact["value"], exact["ci_low"], exact["ci_high"]) == (1.0, 1.0, 1.0)
    assert _row(table, "bertscore_f1", 0.25)["value"] == pytest.approx(1.0, abs=1e-4)
    assert _row(table, "self_bleu", 0.25)["value"] == pytest.approx(100.0)
    assert _row(table, "self_bleu", 1.0)["value"] == 0.0
    assert _row(table, "rougeL_f1", 1.0)["value"] == 0.0
    assert _row(table, "bertscore_f1", 1.0)["value"] < 0.9

    samples = read_records(tmp_path / "summarization_samples.jsonl")
    scores = read_records(tmp_path / "summarization_scores.jsonl")
    items = read_records(tmp_path / "summarization_items.jsonl")
    assert len(samples) == len(scores) == 2 * 3 * 3
    assert samples[0]["summary"] == REFS[0] and samples[0]["system"] == "scripted"
    assert {"rougeL_f1", "bertscore_f1"} <= set(scores[0])
    assert len(items) == 2 * 3 * 3  # temperatures x docs x metrics

    # Rerun: everything is reused from the logs, nothing is generated again.
    again = evaluate_summarization(gen, DOCS, REFS, temperatures=(0.25, 1.0), n=3, bertscore=bertscore,
                                   out_dir=tmp_path, n_resamples=200)
    assert gen.calls == [0.25, 1.0]
    pd.testing.assert_frame_equal(again, table)


def test_evaluate_summarization_scripted_generator_resumes_after_crash(tmp_path):
    crashing = ScriptedGenerator(fail_above=0.5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate_summarization(crashing, DOCS, REFS, temperatures=(0.25, 1.0), n=2, bertscore=False,
                               out_dir=tmp_path, system="s")
    assert len(read_records(tmp_path / "summarization_items.jsonl")) == 3 * 2  # T=0.25 kept
    resumed = ScriptedGenerator()
    table = evaluate_summarization(resumed, DOCS, REFS, temperatures=(0.25, 1.0), n=2, bertscore=False,
                                   out_dir=tmp_path, system="s")
    assert resumed.calls == [1.0]  # only the missing temperature is generated
    assert _row(table, "rougeL_f1", 0.25)["value"] == 1.0 and _row(table, "self_bleu", 1.0)["value"] == 0.0
    with pytest.raises(ValueError, match="field 'n' was 2 for the results logged here, now 3"):
        evaluate_summarization(resumed, DOCS, REFS, temperatures=(0.25,), n=3, bertscore=False,
                               out_dir=tmp_path, system="s")


def test_evaluate_summarization_rejects_bad_input():
    with pytest.raises(ValueError, match="row 1, field 'reference'"):
        evaluate_summarization(ScriptedGenerator(), DOCS[:2], [REFS[0], None], bertscore=False)
    with pytest.raises(ValueError, match="2 documents but 3 references"):
        evaluate_summarization(ScriptedGenerator(), DOCS[:2], REFS, bertscore=False)


def _tiny_random_nli(out_dir) -> str:
    tok = AutoTokenizer.from_pretrained(default_bertscore_model()[0])
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, initializer_range=0.5,
                        id2label={0: "entailment", 1: "neutral", 2: "contradiction"})
    BertForSequenceClassification(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return str(out_dir)


def test_evaluate_summarization_real_tiny_gpt2_with_tiny_random_nli_model(tmp_path):
    """Real generation (tiny random GPT-2 through the HF backend, nucleus sampling) and a tiny random
    NLI model for EDNA: checks the suite's numbers against metrics recomputed from its sample log."""
    from sparsepo.assets import tiny_model_path
    from sparsepo.generation.hf import HFGenerator

    gen = HFGenerator(str(tiny_model_path("gpt2")), device="cpu")
    edna = EdnaScorer(_tiny_random_nli(tmp_path / "nli"), device="cpu", max_length=128)
    table = evaluate_summarization(gen, DOCS, REFS, temperatures=(1.0,), n=3, max_new_tokens=12,
                                   bertscore=False, edna=edna, out_dir=tmp_path / "run", n_resamples=100)
    assert set(table["metric"]) == {"rougeL_f1", "self_bleu", "entailment", "self_entailment", "edna"}
    samples = pd.DataFrame(read_records(tmp_path / "run" / "summarization_samples.jsonl"))
    assert len(samples) == 9 and samples["summary"].str.len().gt(0).any()
    by_doc = [samples[samples["doc_id"] == str(k)]["summary"].tolist() for k in range(3)]
    rouge = np.mean([rouge_l_f1(s, [REFS[k]] * 3).mean() for k, s in enumerate(by_doc)])
    assert _row(table, "rougeL_f1", 1.0)["value"] == pytest.approx(rouge)
    assert _row(table, "self_bleu", 1.0)["value"] == pytest.approx(np.mean([self_bleu(s) for s in by_doc]))
    direct = edna.score_many(DOCS, by_doc)
    assert _row(table, "edna", 1.0)["value"] == pytest.approx(np.mean([r.edna for r in direct]), abs=1e-6)
    e = _row(table, "entailment", 1.0)
    assert 0.0 <= e["ci_low"] <= e["value"] <= e["ci_high"] <= 1.0
