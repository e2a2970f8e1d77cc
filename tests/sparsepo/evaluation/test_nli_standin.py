"""The offline NLI stand-in: its synthetic pairs (checked against independent word-level edits), a small real
build and its cache, the alias, and (slow) the default build's accuracy and its EDNA behaviour."""

from __future__ import annotations

import difflib
import json

import pytest

from sparsepo.evaluation import nli_standin
from sparsepo.evaluation.nli_standin import (
    ANTONYMS,
    LABELS,
    STANDIN,
    StandinSettings,
    build_pairs,
    contradictions,
    nli_model_or_none,
    review_sentences,
    split_pairs,
    standin_path,
    standin_settings,
)

SMALL = StandinSettings(train_per_label=8, test_per_label=4, steps=2, batch_size=4)


@pytest.fixture(scope="module")
def review_texts() -> list[str]:
    from sparsepo.assets import load_reviews

    return [r["text"] for r in load_reviews()]


@pytest.fixture(scope="module")
def pairs(review_texts):
    return split_pairs(review_texts, StandinSettings(train_per_label=300, test_per_label=60))


def _is_negation_or_antonym_edit(before: str, after: str) -> bool:
    """Independent check: ``after`` is ``before`` with one ``not`` inserted/removed, one ``n't`` word replaced by
    its positive form, or one word swapped for its antonym."""
    a, b = before.split(), after.split()
    ops = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if len(ops) != 1:
        return False
    tag, i1, i2, j1, j2 = ops[0]
    if tag in ("insert", "delete"):
        return (b[j1:j2] if tag == "insert" else a[i1:i2]) == ["not"]
    old, new = a[i1:i2], b[j1:j2]
    if tag != "replace" or len(old) != 1 or len(new) != 1:
        return False
    return ANTONYMS.get(old[0]) == new[0] or (old[0].endswith("n't") and new[0] in
                                              {old[0][:-3], "can", "will", "do"})


def test_contradiction_edits_by_hand():
    got = dict((text, kind) for kind, text in contradictions("it is a good film ."))
    assert got == {"it is not a good film .": "negation", "it is a bad film .": "antonym"}
    assert ("negation", "i do like it") in contradictions("i don't like it")
    assert ("negation", "he can act") in contradictions("he can't act")
    assert ("negation", "it is fun") in contradictions("it isn't fun")
    assert ("negation", "it is fun") in contradictions("it is not fun")
    assert "it is not not fun" not in [t for _, t in contradictions("it is not fun")]  # no double negation
    assert contradictions("a cat sat on a mat") == []


def test_pairs_entail_contradict_or_come_from_another_review(pairs, review_texts):
    sentences = review_sentences(review_texts)
    owners: dict[str, set[int]] = {}
    for k, sents in enumerate(sentences):
        for s in sents:
            owners.setdefault(s, set()).add(k)
    for pair in pairs["train"] + pairs["test"]:
        window = pair.premise
        assert window in " ".join(sentences[pair.review])  # consecutive sentences of its review, from the 4th on
        if pair.label == "entailment":
            assert pair.hypothesis in pair.premise and len(pair.hypothesis.split()) >= 5
        elif pair.label == "contradiction":
            premise_sents = [s for s in sentences[pair.review] if s in pair.premise]
            assert any(_is_negation_or_antonym_edit(s, pair.hypothesis) for s in premise_sents), pair
        else:
            assert owners.get(pair.hypothesis, set()) - {pair.review}, pair  # a sentence of another review
            assert pair.hypothesis not in sentences[pair.review]
    kinds = {p.kind for p in pairs["train"]}
    assert kinds == {"sentence", "span", "joined", "other-review", "negation", "antonym"}


def test_pairs_are_balanced_deterministic_and_split_by_review(pairs, review_texts):
    for split, n in (("train", 300), ("test", 60)):
        assert [sum(p.label == label for p in pairs[split]) for label in LABELS] == [n] * 3
    assert {p.review for p in pairs["train"]}.isdisjoint({p.review for p in pairs["test"]})
    again = split_pairs(review_texts, StandinSettings(train_per_label=300, test_per_label=60))
    assert again == pairs
    other = split_pairs(review_texts, StandinSettings(train_per_label=300, test_per_label=60, seed=1))
    assert other["train"] != pairs["train"]


def test_no_premise_or_hypothesis_from_a_reviews_first_three_sentences():
    texts = ["\n".join([f"opening number {j} of review {i} is good ." for j in range(3)]
                       + [f"later sentence {j} of review {i} is not bad at all ." for j in range(4)])
             for i in range(6)]
    made = build_pairs(review_sentences(texts, skip=3), range(6), per_label=30, seed=0)
    assert len(made) == 90
    assert not any("opening" in p.premise or "opening" in p.hypothesis for p in made)


def test_settings_from_a_config_section_name_unknown_keys():
    assert standin_settings({"steps": 3}).steps == 3
    with pytest.raises(ValueError, match=r"nli_standin: stepz: unknown key"):
        standin_settings({"stepz": 3})
    assert [nli_model_or_none(v) for v in (None, "", " None ", "null", "standin")] == [None] * 4 + ["standin"]


def test_small_build_writes_a_loadable_folder_and_a_second_call_reuses_it(tmp_path, monkeypatch):
    from sparsepo.evaluation.edna import EdnaScorer, NLIModel

    folder = standin_path(SMALL, root=tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("nli-standin-")
    info = json.loads((folder / "standin.json").read_text())
    assert info["settings"] == {**SMALL.__dict__}
    assert info["examples"] == {"train": dict.fromkeys(LABELS, 8), "test": dict.fromkeys(LABELS, 4)}
    assert set(info["test_accuracy"]) == {*LABELS, "overall"}
    assert all(0.0 <= v <= 1.0 for v in info["test_accuracy"].values())
    assert "not a real NLI model" in info["model"]
    stamp = (folder / "standin.json").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a cached stand-in was rebuilt")

    monkeypatch.setattr(nli_standin, "build_standin", no_training)
    assert standin_path(SMALL, root=tmp_path) == folder
    assert (folder / "standin.json").stat().st_mtime_ns == stamp
    # The alias resolves through the cache (here: this small build) wherever an NLI model name is accepted.
    monkeypatch.setattr(nli_standin, "standin_path", lambda *a, **k: folder)
    nli = NLIModel(STANDIN, device="cpu")
    assert nli.path == str(folder) and nli.entailment_index == 0
    scores = EdnaScorer(nli).pair_scores([("the film is long . it is dull .", "the film is long .")])
    assert scores.shape == (1,) and 0.0 <= scores[0] <= 1.0


def test_concurrent_callers_build_once_and_see_a_complete_folder(tmp_path, monkeypatch):
    import threading
    import time

    calls: list[int] = []

    def fake_build(out, settings, texts=None):  # slow enough for the callers to overlap
        calls.append(1)
        time.sleep(0.3)
        (out / "standin.json").write_text(json.dumps({"test_accuracy": {"overall": 1.0}}))
        return {}

    monkeypatch.setattr(nli_standin, "build_standin", fake_build)
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(standin_path(SMALL, root=tmp_path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(got)) == 1 and (got[0] / "standin.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [got[0].name]  # no temporary folder left behind


def test_build_location_is_keyed_by_settings(tmp_path):
    dirs = {nli_standin.standin_dir(s, tmp_path) for s in (SMALL, StandinSettings(), StandinSettings(seed=1))}
    assert len(dirs) == 3 and nli_standin.standin_dir(SMALL, tmp_path) == nli_standin.standin_dir(SMALL, tmp_path)


@pytest.mark.slow
def test_default_standin_is_well_above_chance_and_prefers_copied_sentences():
    from sparsepo.evaluation.edna import EdnaScorer, split_text
    from sparsepo.experiments.summarization.miniature import miniature_splits

    folder = standin_path()  # the shared cached build (about 3 minutes on a quiet 2-core CPU the first time)
    acc = json.loads((folder / "standin.json").read_text())["test_accuracy"]
    assert acc["overall"] >= 0.75, acc  # measured 0.89 (chance: 1/3); see the README
    assert min(acc[label] for label in LABELS) >= 0.65, acc  # measured 0.85-0.95
    docs = miniature_splits(48, 32, 8)["eval"]  # the miniature's evaluation documents (never seen in training)
    scorer = EdnaScorer(folder, device="cpu")
    lead = scorer.pair_scores([(d["document"], d["reference"]) for d in docs])
    last = scorer.pair_scores([(d["document"], split_text(d["document"])[-1]) for d in docs])
    foreign = scorer.pair_scores([(d["document"], docs[(k + 1) % len(docs)]["reference"]) for k, d in enumerate(docs)])
    # measured: copied sentences 0.23-0.87 (mean 0.74-0.76), another review's lead sentence 0.01-0.59 (mean 0.09).
    # The build is not bit-reproducible (2 CPU threads, reduction order): one build on this machine (held-out 0.84)
    # scored one foreign lead sentence 0.71, above that document's copied last sentence (0.55); so 7 of 8.
    assert (lead > foreign).sum() >= 7 and (last > foreign).sum() >= 7, (lead, last, foreign)
    assert min(lead.mean(), last.mean()) > foreign.mean() + 0.4, (lead, last, foreign)
