"""The leaderboard stage: one Ray task per model, results cached per model and settings, a failed model left out."""

from __future__ import annotations

import pytest

from sparsepo.evaluation.lm_eval_tasks import TASKS_DIR
from sparsepo.experiments.dialogue.experiment import LOCAL_TASKS
from sparsepo.experiments.dialogue.leaderboard import LeaderboardSpec, evaluate_models, table


@pytest.mark.slow
def test_models_are_evaluated_once_and_a_failure_is_left_out(local_ray, tmp_path):
    spec = LeaderboardSpec(tasks=LOCAL_TASKS, suite="local_toy", include_path=str(TASKS_DIR), limit=1, batch_size=4)
    logged: list[str] = []
    models = {"SFT": "tiny-llama", "broken": str(tmp_path / "no-such-model")}
    results = evaluate_models(models, spec, tmp_path / "evals", log=logged.append)
    assert list(results) == ["SFT"]
    assert any("leaderboard of broken failed" in line and "does not exist" in line for line in logged)
    assert results["SFT"]["n-samples"]["sparsepo_toy_gen"]["effective"] == 1  # the limit reached lm-eval
    assert table(results, "local_toy").index.tolist() == ["SFT"]
    logged.clear()
    again = evaluate_models({"SFT": "tiny-llama"}, spec, tmp_path / "evals", log=logged.append)
    assert logged[0].startswith("[dialogue] leaderboard: SFT: cached")  # no second evaluation
    assert again["SFT"]["results"] == results["SFT"]["results"]
    other = evaluate_models({"SFT": "tiny-llama"}, LeaderboardSpec(**{**spec.__dict__, "limit": 2}),
                            tmp_path / "evals", log=logged.append)
    assert other["SFT"]["n-samples"]["sparsepo_toy_gen"]["effective"] == 2  # other settings: evaluated again
