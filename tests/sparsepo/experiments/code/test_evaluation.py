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
    assert list(t.columns[1:7]) == [f"{s} pass@{k}" for s in ("HumanEval", "MBPP") for k in (1, 10, 100)]
    assert t.loc[0, "HumanEval pass@1"] == 12.5 and t.loc[0, "MBPP pass@100"] == 100.0
    assert t.loc[1, "HumanEval pass@1"] == 50.0
    assert t.loc[1, "MBPP pass@100"] is None or math.isnan(t.loc[1, "MBPP pass@100"])


class _PassesFirstFails:
    """Every sample of the first problem is its canonical solution, every sample of the others is wrong."""

    name = "first-passes"

    def __init__(self, problems):
        self.right = problems[0].prompt
        self.solution = problems[0].canonical_solution

    def generate(self, prompts, sampling):
        from sparsepo.generation import Completion

        return [[Completion(self.solution if p == self.right else "    return None\n", finish_reason="stop")
                 for _ in range(sampling.n)] for p in prompts]


def test_pass_at_k_carries_a_bootstrap_ci_over_problems():
    """Two problems, one always solved and one never: the mean is 0.5 and the bootstrap distribution of the
    mean over 2 resampled problems is {0, 0.5, 1} with probabilities 1/4, 1/2, 1/4, so its 95% interval is [0, 1]."""
    from sparsepo.experiments.code.evaluation import pass_at_k

    problems = load_suite({"suite": "humaneval", "task_ids": ["HumanEval/2", "HumanEval/23"]})
    out = pass_at_k(_PassesFirstFails(problems), {"humaneval": problems}, [(0.8, (1, 2))], n=2, max_new_tokens=8)
    for k in (1, 2):
        assert out[f"humaneval/pass@{k}"] == 0.5
        assert (out[f"humaneval/pass@{k}/ci_low"], out[f"humaneval/pass@{k}/ci_high"]) == (0.0, 1.0)


def test_table2_appends_ci_columns_and_prints_cells_with_their_interval():
    from sparsepo.evaluation.report import interval_cells

    t = table2({"SFT": {"humaneval/pass@1": 0.25, "humaneval/pass@1/ci_low": 0.1, "humaneval/pass@1/ci_high": 0.4,
                        "humaneval/pass@10": 0.5}})
    assert (t.loc[0, "HumanEval pass@1 CI low"], t.loc[0, "HumanEval pass@1 CI high"]) == (10.0, 40.0)
    cells = interval_cells(t, float_format="g")
    assert list(cells.columns) == list(t.columns[:7])
    assert cells.loc[0, "HumanEval pass@1"] == "25 [10, 40]"
    assert cells.loc[0, "HumanEval pass@10"] == "50"  # no interval recorded: the value alone
    assert cells.loc[0, "MBPP pass@1"] == ""  # not measured
