"""The summarisation experiment's NLI stage and its flags: the stand-in by default, hub models passed on, and
``--nli-model none`` switching EDNA off (the stand-in build itself: tests/sparsepo/evaluation/test_nli_standin.py)."""

from __future__ import annotations

import pytest

from sparsepo.evaluation.nli_standin import standin_settings
from sparsepo.experiments.command import build_parser, config_from_args
from sparsepo.experiments.summarization.experiment import (
    SummarizationConfig,
    edna_note,
    paper_config,
    stage_nli,
)


def _cfg(*argv: str) -> SummarizationConfig:
    return config_from_args("summarization", build_parser("summarization").parse_args(list(argv)))


def test_flags_default_to_the_standin_and_none_or_empty_switch_edna_off():
    assert _cfg().nli_model == "standin" and _cfg().nli_standin == {}
    settings = standin_settings(_cfg("--nli-standin", "steps=50", "lr=1e-4").nli_standin)
    assert (settings.steps, settings.lr) == (50, 1e-4)  # YAML's "1e-4" string read as the number
    assert paper_config(_cfg()).nli_model == "tals/albert-xlarge-vitaminc-mnli"  # the paper keeps SummaC
    logged: list[str] = []
    for flag in ("none", "None", ""):
        assert stage_nli(_cfg("--nli-model", flag), logged.append) == (None, None)
    assert logged[-1] == "[summarization] nli: none (EDNA not measured)"
    assert stage_nli(_cfg("--nli-model", "org/nli"), logged.append) == ("org/nli", None)


def test_a_bad_standin_setting_names_the_config_key():
    with pytest.raises(ValueError, match=r"nli_standin: stepz: unknown key"):
        stage_nli(SummarizationConfig(nli_standin={"stepz": 1}), print)


def test_report_note_says_where_edna_comes_from():
    assert edna_note(None, None) == "EDNA not measured (no NLI model); its cells are empty."
    assert edna_note("org/nli", None) == "EDNA with the NLI model `org/nli`."
    info = {"test_accuracy": {"entailment": 0.9, "neutral": 0.8, "contradiction": 0.7, "overall": 0.8}}
    note = edna_note("/cache/nli-standin-x", info)
    assert "stand-in**, not a real NLI model" in note
    assert "held-out accuracy 0.80 (entailment 0.90, neutral 0.80, contradiction 0.70)" in note
