"""Suite specs and the Table 2 layout."""

from __future__ import annotations

import math

import pytest

from sparsepo.experiments.code.evaluation import load_suite, table2


def test_suite_spec_selects_task_ids_in_order_and_names_unknown_ones():
    problems = load_suite({"suite": "humaneval", "task_ids": ["HumanEval/5", "HumanEval/1"]})
    assert [p.task_id for p in problems] == ["HumanEval/5", "HumanEval/1"]
    assert len(load_suite({"suite": "humaneval"})) == 164
    with pytest.raises(ValueError, match="unknown task_ids"):
        load_suite({"suite": "humaneval", "task_ids": ["HumanEval/999"]})
    with pytest.raises(ValueError, match="code suite must be one of"):
        load_suite({"suite": "apps"})


def test_table2_rows_per_method_percent_and_blank_when_not_measured():
    t = table2({"SFT": {"humaneval/pass@1": 0.125, "mbpp/pass@100": 1.0}, "dpo": {"humaneval/pass@1": 0.5}})
    assert t["Method"].tolist() == ["SFT", "dpo"]
    assert list(t.columns[1:]) == [f"{s} pass@{k}" for s in ("HumanEval", "MBPP") for k in (1, 10, 100)]
    assert t.loc[0, "HumanEval pass@1"] == 12.5 and t.loc[0, "MBPP pass@100"] == 100.0
    assert t.loc[1, "HumanEval pass@1"] == 50.0
    assert t.loc[1, "MBPP pass@100"] is None or math.isnan(t.loc[1, "MBPP pass@100"])
