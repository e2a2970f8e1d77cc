"""tune/frontier.py end to end on a tiny model through a local Ray instance: a real sweep of 2 trials."""

import pandas as pd
import pytest
import ray

from sparsepo.experiments.sentiment.frontier import FrontierConfig, grid_points, prepare_pairs, run_frontier
from sparsepo.pareto import pareto_front


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def small(tmp_path, **kw) -> FrontierConfig:
    base = dict(model="tiny-llama", methods=("dpo", "sparsepo"), betas=(0.5,), steps=2, eval_every=1,
                n_train_prompts=24, n_test_prompts=3, eval_tokens=6, pair_tokens=12, storage_path=str(tmp_path), name="fr")
    return FrontierConfig(**{**base, **kw})


def test_frontier_pipeline_writes_table_fronts_plots_and_report(local_ray, tmp_path):
    cfg = small(tmp_path)
    files = run_frontier(cfg, log=lambda *_: None)
    points = pd.read_csv(files["points"])
    assert set(points["method"]) == {"dpo", "sparsepo"} and set(points["beta"]) == {0.5}
    assert sorted(points["step"].unique().tolist()) == [1, 2]  # evaluated every step
    assert len(points) == 4 and points[["reward", "kl"]].notna().all().all()
    assert points["kl"].ge(0).all() and points["reward"].between(0, 1).all()
    assert points.loc[points["method"] == "sparsepo", "sparsity/reward/chosen"].notna().all()
    front = pd.read_csv(files["front_overall"])
    want = pareto_front(points, x="kl", y="reward")
    assert front[["kl", "reward"]].values.tolist() == want[["kl", "reward"]].values.tolist()
    for key in ("frontier", "sparsity"):
        assert files[key].read_bytes()[:4] == b"\x89PNG"
    report = files["report"].read_text()
    assert "Pareto front" in report and "sparsepo" in report

    # A rerun reuses the cached pairs and, with --resume, reruns no finished trial.
    path, test_prompts, n = prepare_pairs(cfg, log=lambda *_: None)
    before = path if isinstance(path, str) else str(path)
    mtime = __import__("os").path.getmtime(before)
    prepare_pairs(cfg, log=lambda *_: None)
    assert __import__("os").path.getmtime(before) == mtime
    again = run_frontier(small(tmp_path, resume=True), log=lambda *_: None)
    pd.testing.assert_frame_equal(pd.read_csv(again["points"]), points)


def test_grid_uses_simpo_betas_for_simpo():
    pts = grid_points(FrontierConfig(methods=("dpo", "simpo"), betas=(0.1, 0.2), simpo_betas=(2.0,)))
    assert pts == {
        "dpo/beta=0.1": {"method": "dpo", "loss.beta": 0.1},
        "dpo/beta=0.2": {"method": "dpo", "loss.beta": 0.2},
        "simpo/beta=2": {"method": "simpo", "loss.beta": 2.0},
    }
