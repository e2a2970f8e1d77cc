"""Points of the frontier: per-prompt values parsed from the reported metrics, CIs = a direct bootstrap of them."""

import json

import numpy as np
import pandas as pd
import pytest

from sparsepo.evaluation.sentiment import PER_PROMPT_KEY
from sparsepo.evaluation.stats import bootstrap_ci
from sparsepo.experiments.sentiment.points import (
    REFERENCE,
    points_table,
    reference_point,
    train_table,
)

POINTS = {"dpo/beta=0.1": {"method": "dpo", "loss.beta": 0.1}, "sparsepo/beta=0.1": {"method": "sparsepo", "loss.beta": 0.1}}


def per_prompt(rng, n=40, shift=0.0):
    return json.dumps({"reward": (rng.uniform(0, 1, n) + shift).tolist(), "kl": rng.gamma(2.0, 1.0, n).tolist(),
                       "kl_mc": rng.normal(1.0, 1.0, n).tolist()})


@pytest.fixture
def results():
    rng = np.random.default_rng(0)
    rows = []
    for point in POINTS:
        for step in (1, 2, 3, 4):
            row = {"point": point, "trial_id": point, "step": step, "loss": 0.7 - 0.01 * step,
                   "mask/reward/chosen/sparsity": 50.0 + step if point.startswith("sparsepo") else np.nan}
            if step % 2 == 0:  # evaluated every 2 steps, logged every step
                values = json.loads(per_prompt(rng, shift=0.1 * step))
                row.update({"eval/reward": np.mean(values["reward"]), PER_PROMPT_KEY: json.dumps(values)})
            rows.append(row)
    return pd.DataFrame(rows)


def test_cis_equal_a_direct_bootstrap_of_the_per_prompt_values(results):
    reference = {PER_PROMPT_KEY: json.dumps({"reward": [0.4, 0.6, 0.5] * 10, "kl": [0.0] * 30, "kl_mc": [0.0] * 30})}
    points, values = points_table(results, POINTS, reference, n_resamples=500, seed=7)
    assert len(points) == 5 and points["method"].iloc[0] == REFERENCE and points["step"].iloc[0] == 0
    for _, row in points.iterrows():
        mine = values[(values["method"] == row["method"]) & (values["step"] == row["step"])]
        if row["method"] != REFERENCE:
            mine = mine[mine["beta"] == row["beta"]]
        for metric in ("reward", "kl"):
            direct = bootstrap_ci(mine.sort_values("prompt_id")[metric].to_numpy(), n_resamples=500, seed=7)
            assert (row[metric], row[f"{metric}_low"], row[f"{metric}_high"]) == pytest.approx(
                (direct.value, direct.low, direct.high), abs=1e-12)
        assert row["n_prompts"] == len(mine)
    # The mean reported by the trial is the mean of its per-prompt values.
    evaluated = results[results["eval/reward"].notna()]
    trained = points[points["method"] != REFERENCE]
    assert sorted(trained["reward"]) == pytest.approx(sorted(evaluated["eval/reward"]))
    assert "loss" in points and trained["loss"].notna().all()  # the step's training metrics ride along
    ref = reference_point(points)
    assert ref["kl"] == 0.0 and ref["kl_low"] == 0.0 and ref["kl_high"] == 0.0 and ref["reward"] == pytest.approx(0.5)


def test_train_table_has_every_logged_step(results):
    train = train_table(results, POINTS)
    assert len(train) == 8 and train.groupby("method")["step"].apply(list).to_dict() == {
        "dpo": [1, 2, 3, 4], "sparsepo": [1, 2, 3, 4]}
    sp = train[train["method"] == "sparsepo"]["sparsity/reward/chosen"]
    assert sp.tolist() == [51.0, 52.0, 53.0, 54.0]


def test_several_seeds_average_per_prompt_and_keep_each_seed_apart():
    from sparsepo.experiments.sentiment.frontier import FrontierConfig, grid_points
    from sparsepo.experiments.sentiment.points import points_by_seed

    points = grid_points(FrontierConfig(methods=("dpo",), betas=(0.1,), seeds=(3, 4)))
    assert points == {f"dpo/beta=0.1/seed={s}": {"method": "dpo", "loss.beta": 0.1, "run.seed": s} for s in (3, 4)}
    assert list(grid_points(FrontierConfig(methods=("dpo",), betas=(0.1,), seed=2))) == ["dpo/beta=0.1"]
    rng = np.random.default_rng(3)
    values = {p: json.loads(per_prompt(rng)) for p in points}
    results = pd.DataFrame([{"point": p, "trial_id": p, "step": 4, "loss": 0.5, "eval/reward": np.mean(v["reward"]),
                             PER_PROMPT_KEY: json.dumps(v)} for p, v in values.items()])
    table, per = points_table(results, points, n_resamples=200, seed=1)
    assert len(table) == 1 and table["n_seeds"].iloc[0] == 2
    want = (np.array(values["dpo/beta=0.1/seed=3"]["reward"]) + np.array(values["dpo/beta=0.1/seed=4"]["reward"])) / 2
    np.testing.assert_allclose(per.sort_values("prompt_id")["reward"], want)
    assert table["reward"].iloc[0] == want.mean()
    from sparsepo.evaluation.stats import seeds_prompts_bootstrap_ci  # its CI: over seeds and prompts

    grid = np.array([values[f"dpo/beta=0.1/seed={s}"]["reward"] for s in (3, 4)])
    ci = seeds_prompts_bootstrap_ci(grid, n_resamples=200, seed=1)
    assert (table["reward_low"].iloc[0], table["reward_high"].iloc[0]) == pytest.approx((ci.low, ci.high))
    by_seed = points_by_seed(results, points, n_resamples=200, seed=1)
    assert by_seed["seed"].tolist() == [3, 4]
    assert by_seed["reward"].tolist() == [np.mean(values[f"dpo/beta=0.1/seed={s}"]["reward"]) for s in (3, 4)]
