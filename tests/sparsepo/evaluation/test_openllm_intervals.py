"""Bootstrap intervals of Table 1 scores on hand-built lm-eval results, checked against exact resampling laws."""

from __future__ import annotations

import pytest

from sparsepo.evaluation.openllm_intervals import column_intervals, document_values
from sparsepo.evaluation.openllm_scores import TaskSpec

GEN = (TaskSpec("Gen", "gen", "exact_match"),)


def gen_results(values: list[float]) -> dict:
    return {"results": {"gen": {"exact_match,none": sum(values) / len(values)}},
            "configs": {"gen": {"output_type": "generate_until"}},
            "samples": {"gen": [{"doc_id": i, "filter": "none", "exact_match": v} for i, v in enumerate(values)]}}


def test_document_values_pool_list_metrics_per_instruction():
    spec = TaskSpec("IFEval Inst.", "ifeval", "inst_level_strict_acc")
    results = {"samples": {"ifeval": [{"filter": "none", "inst_level_strict_acc": [True, False, True]},
                                      {"filter": "none", "inst_level_strict_acc": [False]},
                                      {"filter": "other", "inst_level_strict_acc": [True]}]}}
    num, den = document_values(results, "ifeval", spec)
    assert num.tolist() == [2.0, 0.0] and den.tolist() == [3.0, 1.0]  # the other filter's record is not counted
    with pytest.raises(ValueError, match="ifeval.*log_samples"):
        document_values({"samples": {}}, "ifeval", spec)


def test_two_documents_one_right_resample_to_the_full_range():
    """Means of 2 resampled documents (values 0 and 1) are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4:
    the 95% percentile interval is [0, 100] after normalisation (baseline 0)."""
    intervals = column_intervals(gen_results([0.0, 1.0]), GEN, n_resamples=2000)
    assert intervals["Gen"] == (0.0, 100.0) and intervals["Average"] == (0.0, 100.0)


def test_identical_documents_give_a_zero_width_interval_and_more_documents_a_narrower_one():
    assert column_intervals(gen_results([1.0] * 5), GEN)["Gen"] == (100.0, 100.0)
    small = column_intervals(gen_results([0.0, 1.0] * 5), GEN)["Gen"]
    large = column_intervals(gen_results([0.0, 1.0] * 200), GEN)["Gen"]
    assert small[0] < 50 < small[1] and large[1] - large[0] < 0.5 * (small[1] - small[0])
    # Normal approximation for 400 Bernoulli(1/2) documents: 1.96 * sqrt(0.25 / 400) = +-4.9 points.
    assert large == pytest.approx((45.1, 54.9), abs=1.2)


def mc_samples(values: list[float], n_choices: int) -> list[dict]:
    return [{"doc_id": i, "filter": "none", "acc_norm": v, "arguments": [["q", f" {j}"] for j in range(n_choices)]}
            for i, v in enumerate(values)]


def test_mixed_baselines_floor_each_subtask_before_averaging():
    """A 2-choice subtask with documents 0, 1, 0, 1 and a 4-choice one always right (100 in every replicate).
    A resample of the 2-choice documents scores at most chance (floored to 0) with probability 11/16 and 100
    with probability 1/16, so the column (the mean of the two normalised subtasks) has the interval [50, 100]."""
    results = {
        "group_subtasks": {"mc": ["two", "four"]},
        "configs": {"two": {"output_type": "multiple_choice"}, "four": {"output_type": "multiple_choice"}},
        "samples": {"two": mc_samples([0.0, 1.0, 0.0, 1.0], 2), "four": mc_samples([1.0] * 4, 4)},
    }
    assert column_intervals(results, (TaskSpec("MC", "mc", "acc_norm"),), n_resamples=4000)["MC"] == (50.0, 100.0)
