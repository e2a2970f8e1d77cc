"""Open LLM Leaderboard v2 score normalisation and the paper's Table 1 layout.

Works on the results dict of ``lm_eval.simple_evaluate`` (keys ``results``, ``group_subtasks``, ``configs`` and,
for multiple-choice baselines, ``samples``); file I/O lives in :mod:`sparsepo.evaluation.openllm`.

Normalisation (Hugging Face, "Open LLM Leaderboard - Scores Normalization",
https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization; METHODS.md):

- A raw score s in [0, 1] with random-guess baseline b is rescaled to ``max(0, (s - b) / (1 - b)) * 100``:
  chance level maps to 0 (anything below chance is floored at 0) and a perfect score to 100.
- Multiple-choice subtasks have b = 1 / (number of choices). The number of choices is read from what was run:
  the per-document requests in the logged samples (one loglikelihood request per choice), else a literal
  ``doc_to_choice`` list in the task config. Where it varies inside one subtask, the most common count is used
  (ties: the larger count), which gives the leaderboard's 1/10 for MMLU-Pro (83% of its questions have 10
  options) and 1/4 for GPQA.
- Generative tasks (MATH-hard exact match, IFEval) have b = 0.
- A task whose subtasks have different baselines (BBH, MuSR) is normalised per subtask and the normalised
  subtask scores are averaged without weights. A task whose subtasks all share one baseline (GPQA, MATH-hard)
  or that has none (MMLU-Pro, IFEval) is normalised once, from lm-eval's task score (for a group: its
  size-weighted mean over subtasks).
- IFEval is reported as two columns, instruction-level and prompt-level strict accuracy.
- Average: ``"paper"`` (default) is the mean over all columns, the two IFEval columns counting once each; this
  reproduces the paper's Table 1 (SFT row: mean(2.87, 0.30, 0.78, 4.02, 1.71, 25.90, 14.97) = 7.22).
  ``"leaderboard"`` first averages the columns of one lm-eval task (IFEval: mean of the two accuracies, as the
  leaderboard's single IFEval score) and then averages over tasks.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

Average = Literal["paper", "leaderboard"]
AVERAGE_COLUMN = "Average"
GENERATIVE_OUTPUT_TYPES = ("generate_until",)


@dataclass(frozen=True)
class TaskSpec:
    """One column of Table 1: the lm-eval ``task`` (a task or a group) and the ``metric`` read from it."""

    column: str
    task: str
    metric: str
    filter: str = "none"

    @property
    def key(self) -> str:
        """The results key lm-eval writes, ``"<metric>,<filter>"``."""
        return f"{self.metric},{self.filter}"


# Column order and headers of the paper's Table 1.
OPEN_LLM_V2: tuple[TaskSpec, ...] = (
    TaskSpec("BBH", "leaderboard_bbh", "acc_norm"),
    TaskSpec("MATH", "leaderboard_math_hard", "exact_match"),
    TaskSpec("GPQA", "leaderboard_gpqa", "acc_norm"),
    TaskSpec("MuSR", "leaderboard_musr", "acc_norm"),
    TaskSpec("MMLU-Pro", "leaderboard_mmlu_pro", "acc"),
    TaskSpec("IFEval Inst.", "leaderboard_ifeval", "inst_level_strict_acc"),
    TaskSpec("IFEval Prompt", "leaderboard_ifeval", "prompt_level_strict_acc"),
)

# The offline stand-ins in sparsepo/evaluation/lm_eval_tasks, scored by the same rules.
LOCAL_TOY: tuple[TaskSpec, ...] = (
    TaskSpec("MC", "sparsepo_toy_mc", "acc_norm"),
    TaskSpec("Gen", "sparsepo_toy_gen", "exact_match"),
    TaskSpec("IFEval Inst.", "sparsepo_toy_ifeval", "inst_level_strict_acc"),
    TaskSpec("IFEval Prompt", "sparsepo_toy_ifeval", "prompt_level_strict_acc"),
)

SUITES: dict[str, tuple[TaskSpec, ...]] = {"open_llm_v2": OPEN_LLM_V2, "local_toy": LOCAL_TOY}


def get_suite(suite: str | Sequence[TaskSpec]) -> tuple[TaskSpec, ...]:
    """A suite by name (see :data:`SUITES`) or an explicit sequence of :class:`TaskSpec`."""
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
        return SUITES[suite]
    specs = tuple(suite)
    if not specs or not all(isinstance(s, TaskSpec) for s in specs):
        raise ValueError("a suite must be a non-empty sequence of TaskSpec")
    columns = [s.column for s in specs]
    if len(set(columns)) != len(columns):
        raise ValueError(f"suite columns must be unique, got {columns}")
    return specs


def normalise_score(raw: float, baseline: float) -> float:
    """``max(0, (raw - baseline) / (1 - baseline)) * 100`` for a raw score and baseline in [0, 1)."""
    if not 0.0 <= baseline < 1.0:
        raise ValueError(f"random baseline must lie in [0, 1), got {baseline}")
    if not -1e-9 <= raw <= 1.0 + 1e-9:  # tolerance for float sums in lm-eval's aggregation
        raise ValueError(f"raw score must lie in [0, 1], got {raw}")
    return max(0.0, (raw - baseline) / (1.0 - baseline)) * 100.0


def leaf_tasks(results: Mapping[str, Any], task: str) -> list[str]:
    """The evaluated (non-group) tasks under ``task``, in lm-eval's order; ``[task]`` for a plain task."""
    children = results.get("group_subtasks", {}).get(task)
    if not children:
        return [task]
    return [leaf for child in children for leaf in leaf_tasks(results, child)]


def _doc_choice_counts(results: Mapping[str, Any], task: str) -> Counter[int]:
    """Number of choices of each logged document of a multiple-choice task (one request per choice)."""
    per_doc: dict[Any, int] = {}
    for i, sample in enumerate(results.get("samples", {}).get(task, [])):
        if "arguments" not in sample:
            raise ValueError(f"samples of task {task!r}, entry {i}: no 'arguments' field")
        per_doc[sample.get("doc_id", i)] = len(sample["arguments"])
    return Counter(per_doc.values())


def num_choices(results: Mapping[str, Any], task: str) -> int | None:
    """Number of answer choices of an evaluated task; ``None`` for a generative task.

    From the logged samples when present, else from a literal ``doc_to_choice`` list in the task config; the
    most common count (ties: the larger) where documents differ.
    """
    config = results.get("configs", {}).get(task)
    if config is None:
        raise KeyError(f"task {task!r} has no entry in the results' 'configs'")
    output_type = config.get("output_type")
    if output_type in GENERATIVE_OUTPUT_TYPES:
        return None
    if output_type != "multiple_choice":
        raise ValueError(f"task {task!r}: no random baseline is defined for output_type {output_type!r}")
    counts = _doc_choice_counts(results, task)
    if not counts and isinstance(config.get("doc_to_choice"), list):
        counts = Counter([len(config["doc_to_choice"])])
    if not counts:
        raise ValueError(
            f"task {task!r}: cannot tell its number of choices: the results carry no logged samples for it and "
            f"its doc_to_choice is {config.get('doc_to_choice')!r}; evaluate with log_samples=True and load "
            "the results with their samples_*.jsonl files"
        )
    return max(counts, key=lambda k: (counts[k], k))


def random_baseline(results: Mapping[str, Any], task: str) -> float:
    """Expected score of random guessing: 1 / num_choices, or 0 for a generative task."""
    k = num_choices(results, task)
    return 0.0 if k is None else 1.0 / k


def _raw(results: Mapping[str, Any], task: str, spec: TaskSpec) -> float:
    entry = results.get("results", {}).get(task)
    if entry is None:
        raise KeyError(f"task {task!r} (column {spec.column!r}) is missing from the results")
    if spec.key not in entry:
        found = sorted(k for k in entry if "," in k and "_stderr" not in k)
        raise KeyError(f"task {task!r} has no metric {spec.key!r} (column {spec.column!r}); found {found}")
    return float(entry[spec.key])


def subtask_table(
    results: Mapping[str, Any], suite: str | Sequence[TaskSpec] = "open_llm_v2"
) -> pd.DataFrame:
    """One row per (column, evaluated subtask): raw score, choices, baseline and floored normalised score.

    Columns: column, task, subtask, metric, n_docs, num_choices (NaN: generative), baseline, raw, normalised
    (0-100).
    """
    rows = []
    for spec in get_suite(suite):
        for leaf in leaf_tasks(results, spec.task):
            k = num_choices(results, leaf)
            baseline = 0.0 if k is None else 1.0 / k
            raw = _raw(results, leaf, spec)
            n_docs = results.get("n-samples", {}).get(leaf, {}).get("effective")
            rows.append(
                {
                    "column": spec.column,
                    "task": spec.task,
                    "subtask": leaf,
                    "metric": spec.key,
                    "n_docs": n_docs,
                    "num_choices": k,
                    "baseline": baseline,
                    "raw": raw,
                    "normalised": normalise_score(raw, baseline),
                }
            )
    return pd.DataFrame(rows)


def column_scores(
    results: Mapping[str, Any], suite: str | Sequence[TaskSpec] = "open_llm_v2", average: Average = "paper"
) -> dict[str, float]:
    """Normalised score (0-100) of every column of the suite, plus ``"Average"`` (see module doc)."""
    specs = get_suite(suite)
    table = subtask_table(results, specs)
    scores: dict[str, float] = {}
    for spec in specs:
        rows = table[table["column"] == spec.column]
        baselines = rows["baseline"].unique()
        if len(baselines) == 1:
            # One shared baseline: normalise lm-eval's task score (a group's size-weighted mean).
            scores[spec.column] = normalise_score(_raw(results, spec.task, spec), float(baselines[0]))
        else:
            scores[spec.column] = float(rows["normalised"].mean())
    scores[AVERAGE_COLUMN] = suite_average(scores, specs, average)
    return scores


def suite_average(scores: Mapping[str, float], specs: Sequence[TaskSpec], average: Average) -> float:
    """The ``Average`` column from the column scores (see module doc); works elementwise on arrays of bootstrap
    replicates too (:mod:`sparsepo.evaluation.openllm_intervals`)."""
    if average == "paper":
        return sum(scores[s.column] for s in specs) / len(specs)
    if average == "leaderboard":
        per_task: dict[str, list[float]] = {}
        for s in specs:
            per_task.setdefault(s.task, []).append(scores[s.column])
        return sum(sum(v) / len(v) for v in per_task.values()) / len(per_task)
    raise ValueError(f"unknown average {average!r}; choose 'paper' or 'leaderboard'")


def table1(
    runs: Mapping[str, Mapping[str, Any]],
    suite: str | Sequence[TaskSpec] = "open_llm_v2",
    average: Average = "paper",
) -> pd.DataFrame:
    """The paper's Table 1: one row per system (``runs`` maps system name -> lm-eval results), one column per
    suite column plus ``"Average"``; normalised scores, 0-100."""
    specs = get_suite(suite)
    rows = {name: column_scores(res, specs, average) for name, res in runs.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[s.column for s in specs] + [AVERAGE_COLUMN])


def to_markdown(df: pd.DataFrame, digits: int = 2, index_name: str = "Method") -> str:
    """A GitHub Markdown table of ``df`` (index as first column), floats with ``digits`` decimals."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    header = [df.index.name or index_name, *map(str, df.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx), *(fmt(v) for v in row.tolist())]) + " |")
    return "\n".join(lines) + "\n"
