"""Open LLM Leaderboard v2 normalisation on hand-built lm-eval results dicts, checked against hand arithmetic."""

from __future__ import annotations

import pytest

from sparsepo.evaluation import openllm_scores as lb
from sparsepo.evaluation.openllm_scores import TaskSpec


def mc_config(n_choices: int | None = None) -> dict:
    """A multiple-choice task config; a literal doc_to_choice list when n_choices is given."""
    choice = [f"({i})" for i in range(n_choices)] if n_choices else "{{choices}}"
    return {"output_type": "multiple_choice", "doc_to_choice": choice}


def samples_with_choices(counts: list[int]) -> list[dict]:
    """Logged samples whose documents have the given numbers of choices (one request per choice)."""
    return [{"doc_id": i, "arguments": [["ctx", f" c{j}"] for j in range(k)]} for i, k in enumerate(counts)]


def test_normalise_score_closed_form():
    assert lb.normalise_score(0.25, 0.25) == 0.0
    assert lb.normalise_score(1.0, 0.25) == pytest.approx(100.0)
    assert lb.normalise_score(0.1, 0.25) == 0.0  # below chance is floored, not negative
    assert lb.normalise_score(0.6, 0.25) == pytest.approx(46.6667, abs=1e-4)  # the HF docs' GPQA example
    assert lb.normalise_score(0.3, 0.0) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="baseline"):
        lb.normalise_score(0.5, 1.0)
    with pytest.raises(ValueError, match="raw score"):
        lb.normalise_score(1.5, 0.1)


def test_num_choices_from_samples_takes_most_common_then_larger():
    results = {
        "configs": {"t": mc_config(), "u": mc_config()},
        "samples": {"t": samples_with_choices([10, 10, 9, 3, 10]), "u": samples_with_choices([3, 5, 5, 3])},
    }
    assert lb.num_choices(results, "t") == 10
    assert lb.random_baseline(results, "t") == pytest.approx(0.1)
    assert lb.num_choices(results, "u") == 5  # tie between 3 and 5: the larger count


def test_num_choices_duplicated_filters_count_each_document_once():
    # Tasks with several filters log one record per (document, filter).
    samples = samples_with_choices([4, 2]) + samples_with_choices([4, 2])
    results = {"configs": {"t": mc_config()}, "samples": {"t": samples}}
    assert lb.num_choices(results, "t") == 4


def test_num_choices_from_config_list_and_generative_tasks():
    results = {"configs": {"mc": mc_config(4), "gen": {"output_type": "generate_until"}}}
    assert lb.num_choices(results, "mc") == 4
    assert lb.num_choices(results, "gen") is None
    assert lb.random_baseline(results, "gen") == 0.0


def test_num_choices_unknown_raises_naming_the_task():
    results = {"configs": {"musr_x": mc_config()}}
    with pytest.raises(ValueError, match="musr_x.*log_samples"):
        lb.num_choices(results, "musr_x")
    with pytest.raises(KeyError, match="nope"):
        lb.num_choices(results, "nope")


def group_results(group: str, subtasks: dict[str, tuple[int, float, int]], metric: str, agg: float | None):
    """Results of a group whose subtasks are {name: (n_choices, raw score, n_docs)}."""
    results = {
        "results": {name: {f"{metric},none": raw} for name, (_, raw, _) in subtasks.items()},
        "group_subtasks": {group: list(subtasks)},
        "configs": {name: mc_config(k) for name, (k, _, _) in subtasks.items()},
        "n-samples": {name: {"original": n, "effective": n} for name, (_, _, n) in subtasks.items()},
    }
    if agg is not None:
        results["results"][group] = {f"{metric},none": agg}
    return results


def test_subtasks_with_different_choices_are_normalised_separately_then_averaged():
    # The HF docs' MuSR example: 2, 5 and 3 choices.
    res = group_results(
        "musr", {"murder": (2, 0.7, 250), "object": (5, 0.4, 256), "team": (3, 0.6, 250)}, "acc_norm", 0.567
    )
    spec = [TaskSpec("MuSR", "musr", "acc_norm")]
    expected = ((0.7 - 0.5) / 0.5 + (0.4 - 0.2) / 0.8 + (0.6 - 1 / 3) / (2 / 3)) / 3 * 100  # = 35.0
    scores = lb.column_scores(res, spec)
    assert scores["MuSR"] == pytest.approx(expected)
    assert scores["MuSR"] == pytest.approx(35.0)
    table = lb.subtask_table(res, spec)
    assert table["baseline"].tolist() == pytest.approx([0.5, 0.2, 1 / 3])
    assert table["normalised"].tolist() == pytest.approx([40.0, 25.0, 40.0])


def test_below_chance_subtask_is_floored_before_averaging():
    res = group_results("bbh", {"a": (2, 0.3, 10), "b": (4, 0.625, 10)}, "acc_norm", 0.4625)
    scores = lb.column_scores(res, [TaskSpec("BBH", "bbh", "acc_norm")])
    assert scores["BBH"] == pytest.approx((0.0 + 50.0) / 2)


def test_shared_baseline_normalises_the_size_weighted_task_score():
    # GPQA-like: all subtasks 4 choices; lm-eval's group score is the size-weighted mean (20 + 25) / 150.
    res = group_results("gpqa", {"diamond": (4, 0.2, 100), "main": (4, 0.5, 50)}, "acc_norm", 0.3)
    scores = lb.column_scores(res, [TaskSpec("GPQA", "gpqa", "acc_norm")])
    assert scores["GPQA"] == pytest.approx((0.3 - 0.25) / 0.75 * 100)


def test_missing_metric_error_names_task_and_metric():
    res = group_results("g", {"a": (2, 0.5, 4)}, "acc", None)
    with pytest.raises(KeyError, match=r"'a'.*acc_norm,none"):
        lb.subtask_table(res, [TaskSpec("G", "g", "acc_norm")])


def paper_sft_results() -> dict:
    """lm-eval-shaped results for the six leaderboard tasks whose normalised scores are the paper's SFT row."""
    target = {"BBH": 2.87, "MATH": 0.30, "GPQA": 0.78, "MuSR": 4.02, "MMLU-Pro": 1.71}

    def raw(score: float, k: int) -> float:  # inverse of the normalisation
        return 1 / k + score / 100 * (1 - 1 / k)

    results: dict = {"results": {}, "configs": {}, "group_subtasks": {}, "samples": {}}
    # BBH and MuSR: two subtasks with different numbers of choices, both at the target score.
    for group, column, ks in (("leaderboard_bbh", "BBH", (2, 7)), ("leaderboard_musr", "MuSR", (2, 5))):
        subtasks = [f"{group}_{k}" for k in ks]
        results["group_subtasks"][group] = subtasks
        for name, k in zip(subtasks, ks, strict=True):
            results["results"][name] = {"acc_norm,none": raw(target[column], k)}
            results["configs"][name] = mc_config()
            results["samples"][name] = samples_with_choices([k, k, k])
    results["group_subtasks"]["leaderboard_gpqa"] = ["leaderboard_gpqa_main"]
    results["results"]["leaderboard_gpqa"] = {"acc_norm,none": raw(target["GPQA"], 4)}
    results["results"]["leaderboard_gpqa_main"] = {"acc_norm,none": raw(target["GPQA"], 4)}
    results["configs"]["leaderboard_gpqa_main"] = mc_config(4)
    results["results"]["leaderboard_mmlu_pro"] = {"acc,none": raw(target["MMLU-Pro"], 10)}
    results["configs"]["leaderboard_mmlu_pro"] = mc_config()
    results["samples"]["leaderboard_mmlu_pro"] = samples_with_choices([10, 10, 10, 7])
    results["group_subtasks"]["leaderboard_math_hard"] = ["leaderboard_math_algebra_hard"]
    for name in ("leaderboard_math_hard", "leaderboard_math_algebra_hard"):
        results["results"][name] = {"exact_match,none": 0.0030}
    results["configs"]["leaderboard_math_algebra_hard"] = {"output_type": "generate_until"}
    results["results"]["leaderboard_ifeval"] = {
        "inst_level_strict_acc,none": 0.2590,
        "prompt_level_strict_acc,none": 0.1497,
    }
    results["configs"]["leaderboard_ifeval"] = {"output_type": "generate_until"}
    return results


def test_table1_layout_and_paper_average_reproduce_the_papers_sft_row():
    table = lb.table1({"SFT": paper_sft_results()})
    assert list(table.columns) == [
        "BBH",
        "MATH",
        "GPQA",
        "MuSR",
        "MMLU-Pro",
        "IFEval Inst.",
        "IFEval Prompt",
        "Average",
    ]
    expected = [2.87, 0.30, 0.78, 4.02, 1.71, 25.90, 14.97]
    assert table.loc["SFT"].tolist()[:-1] == pytest.approx(expected)
    assert round(table.loc["SFT", "Average"], 2) == 7.22  # the paper's Table 1 value
    md = lb.to_markdown(table)
    assert (
        md.splitlines()[0]
        == "| Method | BBH | MATH | GPQA | MuSR | MMLU-Pro | IFEval Inst. | IFEval Prompt | Average |"
    )
    assert md.splitlines()[2] == "| SFT | 2.87 | 0.30 | 0.78 | 4.02 | 1.71 | 25.90 | 14.97 | 7.22 |"


def test_leaderboard_average_counts_ifeval_once():
    scores = lb.column_scores(paper_sft_results(), average="leaderboard")
    expected = (2.87 + 0.30 + 0.78 + 4.02 + 1.71 + (25.90 + 14.97) / 2) / 6
    assert scores["Average"] == pytest.approx(expected)


def test_suite_lookup_and_validation():
    assert lb.get_suite("open_llm_v2") is lb.OPEN_LLM_V2
    with pytest.raises(ValueError, match="unknown suite"):
        lb.get_suite("nope")
    with pytest.raises(ValueError, match="unique"):
        lb.get_suite([TaskSpec("A", "t", "acc"), TaskSpec("A", "u", "acc")])
