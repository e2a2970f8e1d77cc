"""Local lm-eval task definitions shipped with sparsepo (pass :data:`TASKS_DIR` as lm-eval's ``include_path``).

They exercise the Open LLM Leaderboard code path offline, with the same output types and metrics as the
leaderboard tasks: ``sparsepo_toy_mc`` (multiple-choice group whose subtasks have 2 and 4 choices, like BBH
or MuSR), ``sparsepo_toy_gen`` (generate-until, exact match, like MATH) and ``sparsepo_toy_ifeval``
(lm-eval's own IFEval scoring on a few local prompts). Data are small JSONL files next to the YAMLs.
"""

from pathlib import Path

TASKS_DIR: Path = Path(__file__).resolve().parent
