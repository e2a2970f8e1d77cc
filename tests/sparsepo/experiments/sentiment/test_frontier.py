"""tune/frontier.py end to end on a tiny model through a local Ray instance: real sweeps of 2 trials and 1 trial.

Checks the step-0 reference point (KL exactly 0), CIs that equal a direct bootstrap of the per-prompt values,
per-step training curves, fronts, report, resume, and that checkpoints evaluated by Ray tasks after the sweep give
the same points as the in-training evaluator.
"""

import dataclasses
import os
from pathlib import Path

import pandas as pd
import pytest

from sparsepo.evaluation.stats import bootstrap_ci
from sparsepo.experiments.sentiment.frontier import (
    FrontierConfig,
    grid_points,
    paper_config,
    prepare_pairs,
    run_frontier,
)
from sparsepo.experiments.sentiment.pareto import pareto_front

QUIET = {"log": lambda *_: None}


def small(tmp_path, **kw) -> FrontierConfig:
    base = dict(model="tiny-llama", methods=("dpo", "sparsepo"), betas=(0.5,), steps=2, eval_every=1,
                n_train_prompts=24, n_test_prompts=5, eval_tokens=6, pair_tokens=12, storage_path=str(tmp_path),
                name="fr", n_resamples=200, batch_size=2)
    return FrontierConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def inline_run(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("frontier")
    return root, run_frontier(small(root), **QUIET)


def of(df: pd.DataFrame, method: str, step: int) -> pd.DataFrame:
    return df[(df["method"] == method) & (df["step"] == step)].sort_values("prompt_id")


@pytest.mark.slow
def test_frontier_pipeline_writes_points_with_cis_reference_curves_and_report(inline_run):
    root, files = inline_run
    points = pd.read_csv(files["points"])
    ref = points[points["method"] == "reference"]
    assert len(ref) == 1 and ref["step"].item() == 0
    assert ref["kl"].item() == 0.0 and ref["kl_high"].item() == 0.0 and ref["kl_mc"].item() == 0.0
    trained = points[points["method"] != "reference"]
    assert set(trained["method"]) == {"dpo", "sparsepo"} and set(trained["beta"]) == {0.5}
    assert sorted(trained["step"].unique().tolist()) == [1, 2] and len(trained) == 4  # evaluated every step
    # Step 1 is the warm-up step (learning rate 0): the policy is still the reference there.
    assert trained["kl"].ge(0).all() and trained.loc[trained["step"] == 2, "kl"].gt(0).all()
    assert points["reward"].between(0, 1).all()

    per_prompt = pd.read_csv(files["per_prompt"])
    for _, row in points.iterrows():
        values = of(per_prompt, row["method"], row["step"])
        assert len(values) == row["n_prompts"] == 5
        for metric in ("reward", "kl"):
            ci = bootstrap_ci(values[metric].to_numpy(), n_resamples=200, seed=0)
            assert (row[metric], row[f"{metric}_low"], row[f"{metric}_high"]) == pytest.approx((ci.value, ci.low, ci.high))

    train = pd.read_csv(files["train_points"])
    assert train.groupby("method")["step"].apply(sorted).to_dict() == {"dpo": [1, 2], "sparsepo": [1, 2]}
    sp = train[train["method"] == "sparsepo"]
    assert sp[["sparsity/reward/chosen", "sparsity/kl/rejected", "loss"]].notna().all().all()

    front = pd.read_csv(files["front_overall"])
    want = pareto_front(points, x="kl", y="reward")
    assert front[["kl", "reward"]].values.tolist() == want[["kl", "reward"]].values.tolist()
    by_method = pd.read_csv(files["front_by_method.csv"])
    assert (by_method.groupby("method")["kl"].min() == 0.0).all()  # every front starts at the reference point
    for key in ("frontier", "sparsity", "sparsity_rejected.png"):
        assert files[key].read_bytes()[:4] == b"\x89PNG"
    report = files["report"].read_text()
    for section in ("What it shows", "Reference point (step 0, KL 0)", "Methods at matched KL", "sparsity_rejected.png"):
        assert section in report
    assert "sparsepo's best reward" in report  # the paired test against DPO, in words

    # Finished trials leave no checkpoint (1.6 GB each on SmolLM2): the table is the output.
    trials = list((root / "fr-sweep").glob("trial_*"))
    assert len(trials) == 2 and not [c for t in trials for c in (t / "train").glob("checkpoint_*") if c.is_dir()]

    # A rerun reuses the cached pairs and, with resume, reruns no finished trial (nor the reference point).
    path, _, _ = prepare_pairs(small(root), **QUIET)
    mtime = os.path.getmtime(path)
    prepare_pairs(small(root), **QUIET)
    assert os.path.getmtime(path) == mtime
    again = run_frontier(small(root, resume=True), **QUIET)
    pd.testing.assert_frame_equal(pd.read_csv(again["points"]), points)


@pytest.mark.slow
def test_checkpoints_evaluated_by_ray_tasks_give_the_inline_points(inline_run):
    root, files = inline_run
    lines = []
    cfg = small(root, methods=("dpo",), eval_mode="checkpoints", name="fr-ckpt")
    decoupled = run_frontier(cfg, log=lines.append)
    # Both checkpoints went to evaluation tasks while the sweep ran, not after it.
    assert any("2 checkpoints evaluated by Ray tasks (hf) during the sweep" in line for line in lines), lines
    inline, tasks = pd.read_csv(files["per_prompt"]), pd.read_csv(decoupled["per_prompt"])
    for method, step in (("reference", 0), ("dpo", 1), ("dpo", 2)):
        a, b = of(inline, method, step), of(tasks, method, step)
        assert len(a) == len(b) == 5
        assert a["reward"].tolist() == b["reward"].tolist()  # same samples
        assert a["kl"].tolist() == pytest.approx(b["kl"].tolist(), rel=1e-5, abs=1e-7)
    # A resumed sweep trains nothing, so its callback sees no checkpoint: they are all evaluated after it.
    lines.clear()
    resumed = run_frontier(dataclasses.replace(cfg, resume=True), log=lines.append)
    assert any("0 checkpoints evaluated" in line for line in lines), lines
    pd.testing.assert_frame_equal(pd.read_csv(resumed["points"]), pd.read_csv(decoupled["points"]))


def test_grid_uses_simpo_betas_for_simpo():
    pts = grid_points(FrontierConfig(methods=("dpo", "simpo"), betas=(0.1, 0.2), simpo_betas=(2.0,)))
    assert pts == {
        "dpo/beta=0.1": {"method": "dpo", "loss.beta": 0.1, "run.seed": 0},
        "dpo/beta=0.2": {"method": "dpo", "loss.beta": 0.2, "run.seed": 0},
        "simpo/beta=2": {"method": "simpo", "loss.beta": 2.0, "run.seed": 0},
    }


def test_zoo_grid_is_every_pair_method_on_its_beta_scale_and_two_seeds():
    from sparsepo.objectives.losses import LOSSES

    pts = grid_points(FrontierConfig(zoo=True, betas=(0.1, 0.5), simpo_betas=(2.0, 5.0)))
    pair_methods = {n for n, s in LOSSES.items() if s.inputs == "pairs"}
    assert {p["method"] for p in pts.values()} == pair_methods and len(pair_methods) >= 16
    assert {p["run.seed"] for p in pts.values()} == {0, 1} and len(pts) == len(pair_methods) * 2 * 2
    for simpo_family in ("simpo", "confpo", "sepo", "sparsepo_simpo"):
        assert {p["loss.beta"] for p in pts.values() if p["method"] == simpo_family} == {2.0, 5.0}
    assert {p["loss.beta"] for p in pts.values() if p["method"] == "tisdpo"} == {0.1, 0.5}


@pytest.mark.slow
def test_zoo_methods_train_in_the_frontier_sweep_with_a_cached_oracle_stage(local_ray, tmp_path):
    """ConfPO, TIS-DPO, SePO and SparsePO-SimPO through the whole pipeline: the oracle stage trains DPO once (a
    rerun finds it cached), every trial reports points, and the weightings' sparsity reaches the summary."""
    logs = []
    cfg = small(tmp_path, methods=("confpo", "tisdpo", "sepo", "sparsepo_simpo"), simpo_betas=(2.0,),
                name="fr-zoo")
    files = run_frontier(cfg, log=logs.append)
    assert any("oracle: 2 steps on the pairs" in line for line in logs), logs
    points = pd.read_csv(files["points"])
    assert set(points["method"]) == {"reference", "confpo", "tisdpo", "sepo", "sparsepo_simpo"}
    assert points.loc[points["method"] != "reference", "kl"].notna().all()
    summary = pd.read_csv(files["sparsity_summary.csv"])
    assert set(summary["method"]) == {"confpo", "sepo", "sparsepo_simpo", "tisdpo"}
    # SePO keeps ceil(30%) of each response's tokens: most are weighted 0 from the first step on
    assert summary.set_index("method").loc["sepo", "reward_start"] > 50
    logs.clear()
    run_frontier(dataclasses.replace(cfg, resume=True), log=logs.append)
    assert any("oracle: cached" in line for line in logs), logs
    # model.oracle may name the oracle's Train run or checkpoint folder: both resolve to its policy
    from sparsepo.training.checkpoint import policy_folder

    (run,) = (tmp_path / "oracle").glob("*/train")
    policy = policy_folder(str(run))
    assert (Path(policy) / "config.json").exists() and policy_folder(str(Path(policy).parent)) == policy
    assert policy_folder("tiny-llama") == "tiny-llama"


def test_paper_preset_is_a_valid_config_of_the_paper_setup():
    cfg = paper_config(FrontierConfig())
    assert cfg.reviews == "imdb" and cfg.test_reviews_split == "test" and cfg.n_test_prompts == 25_000
    assert cfg.eval_every == 100 and cfg.temperature == 1.0 and cfg.eval_mode == "checkpoints"
    assert "sparsepo" in cfg.methods and len(grid_points(cfg)) == 6 * 10 + 4
    with pytest.raises(ValueError, match="eval_mode"):
        FrontierConfig(eval_mode="sometimes")


@pytest.mark.slow
def test_seeds_train_every_point_per_seed_and_masks_start_alike_on_every_seed(local_ray, tmp_path):
    """Five training seeds of SparsePO: the centred masks start near mask.init_sparsity (50%) on every seed. The
    first step's batch (8 pairs of a few response tokens each, on a random tiny model) measures it noisily: each
    seed within 25 points, their mean within 10; points average the seeds."""
    files = run_frontier(small(tmp_path, methods=("sparsepo",), seeds=(0, 1, 2, 3, 4), eval_every=2, batch_size=8,
                               name="fr-seeds"), **QUIET)
    train = pd.read_csv(files["train_points"])
    assert sorted(train["seed"].unique()) == [0, 1, 2, 3, 4] and len(train) == 10
    start = train[train["step"] == 1].set_index("seed")["sparsity/reward/chosen"]
    assert (start - 50).abs().max() <= 25 and abs(start.mean() - 50) <= 10, start.to_dict()
    summary = pd.read_csv(files["sparsity_summary.csv"])
    assert summary["seed"].tolist() == [0, 1, 2, 3, 4] and summary["reward_start"].tolist() == start.tolist()
    points, by_seed = pd.read_csv(files["points"]), pd.read_csv(files["points_by_seed.csv"])
    trained = points[points["method"] == "sparsepo"]
    assert len(trained) == 1 and trained["n_seeds"].item() == 5
    seeds = by_seed[by_seed["method"] == "sparsepo"]
    assert sorted(seeds["seed"]) == [0, 1, 2, 3, 4] and trained["reward"].item() == pytest.approx(seeds["reward"].mean())
    assert "Mask sparsity over training" in files["report"].read_text()
