"""Ray Tune sweeps of real Ray Train runs (tiny llama, a few steps) on a local Ray instance, plus space parsing."""

import struct
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import ray
from ray import PlacementGroupID
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

from sparsepo.config.schema import load_config
from sparsepo.sweeps.search_space import check_space
from sparsepo.sweeps.tuning import (
    best_results,
    build_trial_config,
    default_max_concurrent,
    load_space,
    results_frame,
    run_sweep,
    save_results,
)
from sparsepo.training.checkpoint import complete_checkpoints

STEPS = 4


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def tiny_base(tmp_path, *over):
    return load_config(
        "configs/smoke/sparsepo.yaml",
        [
            "model.name=tiny-llama",
            "data.path=offline:review-pairs",
            "data.limit=16",
            "data.max_length=64",
            "data.max_prompt_length=40",
            f"optim.max_steps={STEPS}",
            "optim.batch_size=2",
            "run.chunk_size=64",
            f"run.storage_path={tmp_path}",
            *over,
        ],
    )


def tb_scalars(trial_dir: Path, tag: str) -> dict[int, float]:
    """step -> value of ``tag`` from a trial's TensorBoard event file, read as raw TFRecords (no TF here)."""
    from tensorboardX.proto.event_pb2 import Event

    out = {}
    for f in trial_dir.glob("events.out.tfevents.*"):
        data, pos = f.read_bytes(), 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4  # length, its crc, payload, payload crc
            for v in event.summary.value:
                if v.tag == tag:
                    out[event.step] = v.simple_value
    return out


# ---------------------------------------------------------------- spaces (no Ray)


def test_load_space_reads_every_kind(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(
        "loss.beta: {grid: [0.1, 0.2]}\n"
        "mask.sharing: {choice: [common, independent]}\n"
        "optim.lr: {loguniform: [1e-6, 1.0e-4]}\n"  # YAML reads 1e-6 as a string
        "mask.weight_decay: {uniform: [0, 1]}\n"
        "run.seed: {randint: [0, 10]}\n"
        "optim.max_steps: 8\n"
        "run.evaluator_args: {value: {n: 2}}\n"
        "kind: {variants: {c: {mask.sharing: common}, m: {method: mapo}}}\n"
    )
    space = load_space(f)
    assert space == {
        "loss.beta": {"grid": [0.1, 0.2]},
        "mask.sharing": {"choice": ["common", "independent"]},
        "optim.lr": {"loguniform": [1e-6, 1e-4]},
        "mask.weight_decay": {"uniform": [0.0, 1.0]},
        "run.seed": {"randint": [0, 10]},
        "optim.max_steps": {"value": 8},
        "run.evaluator_args": {"value": {"n": 2}},
        "kind": {"variants": {"c": {"mask.sharing": "common"}, "m": {"method": "mapo"}}},
    }
    assert load_space(space) == space  # idempotent


@pytest.mark.parametrize(
    "text, message",
    [
        ("loss.beta: {grid: []}", "key 'loss.beta': 'grid' needs a non-empty list"),
        ("optim.lr: {loguniform: [0, 1]}", "key 'optim.lr': 'loguniform' needs 0 < lo"),
        ("optim.lr: {uniform: [2, 1]}", "key 'optim.lr': 'uniform' needs lo < hi"),
        ("optim.lr: {uniform: [a, 1]}", "key 'optim.lr': expected a number"),
        ("run.seed: {randint: [0.5, 3]}", "key 'run.seed': 'randint' needs integer bounds"),
        ("loss.beta: {gird: [1]}", "key 'loss.beta': expected one of"),
        ("kind: {variants: [a, b]}", "key 'kind': 'variants' needs a mapping"),
        ("- 1\n- 2", "top level must be a mapping"),
    ],
)
def test_load_space_errors_name_the_file_and_key(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match="bad.yaml") as err:
        load_space(f)
    assert message in str(err.value)


def test_load_space_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="search space file not found"):
        load_space(tmp_path / "nope.yaml")


@pytest.mark.parametrize("space", sorted(p.name for p in (Path(__file__).resolve().parents[3] / "tune/spaces").glob("*.yaml")))
def test_every_shipped_search_space_loads_and_names_real_config_keys(space):
    parsed = load_space(f"tune/spaces/{space}")
    check_space(parsed)  # every key (and every variant's key) is a TrainConfig field
    assert parsed and all(len(spec) == 1 for spec in parsed.values())


def test_trial_config_applies_params_and_variants(tmp_path):
    base = tiny_base(tmp_path, "loss.l1_u=0.01").to_dict()
    variants = load_space("tune/spaces/mask_kind.yaml")["mask_kind"]["variants"]
    cfg = build_trial_config(base, {"loss.beta": 0.3, "optim.lr": 1e-4, "mask_kind": "common"}, {"mask_kind": variants})
    assert (cfg.method, cfg.mask.sharing, cfg.loss["beta"], cfg.loss["l1_u"], cfg.optim.lr) == ("sparsepo", "common", 0.3, 0.01, 1e-4)
    # Switching method drops the base's sparsepo-only loss entries, keeps the shared beta.
    mapo = build_trial_config(base, {"mask_kind": "mapo"}, {"mask_kind": variants})
    assert mapo.method == "mapo" and mapo.loss == {"beta": 0.1}
    with pytest.raises(ValueError, match=r"unknown config key 'optim.lrr'"):
        build_trial_config(base, {"optim.lrr": 1.0})
    with pytest.raises(ValueError, match=r"trial \(method=mapo, loss.l1_u=0.1\): loss.l1_u: method 'mapo' takes no 'l1_u'; it takes loss.beta$"):
        build_trial_config(base, {"method": "mapo", "loss.l1_u": 0.1})


def test_bad_space_fails_before_any_trial_starts(tmp_path):
    base = tiny_base(tmp_path)
    # An l1 axis crossed with a MaPO variant is an invalid combination: caught when the sweep is set up.
    space = {"loss.l1_u": {"grid": [0.0, 0.1]}, "kind": {"variants": {"s": {"method": "sparsepo"}, "m": {"method": "mapo"}}}}
    with pytest.raises(ValueError, match=r"search space \(loss.l1_u=0.0, kind=m\).*method 'mapo' takes"):
        run_sweep(base, space, name="bad")
    with pytest.raises(ValueError, match="unknown config key 'mask.kindd'"):
        run_sweep(base, {"mask.kindd": {"grid": ["learned"]}}, name="bad")
    with pytest.raises(ValueError, match="needs search='optuna'"):
        run_sweep(base, {"loss.beta": 0.1}, metric=["loss", "kl/chosen"], mode=["min", "min"], name="bad")
    assert not (tmp_path / "bad").exists()


def test_default_concurrency_counts_driver_and_workers():
    assert default_max_concurrent({"CPU": 1 + 2 * 1.0, "GPU": 0.0}, {"CPU": 16.0}) == 5
    assert default_max_concurrent({"CPU": 1.0, "GPU": 2.0}, {"CPU": 64.0, "GPU": 8.0}) == 4
    assert default_max_concurrent({"CPU": 1.0, "GPU": 1.0}, {"CPU": 3.0, "GPU": 8.0}) == 3  # CPU-bound drivers
    assert default_max_concurrent({"CPU": 8.0}, {"CPU": 4.0}) == 1


def test_pareto_front_of_last_values():
    pts = {"a": (1.0, 5.0), "b": (2.0, 4.0), "c": (0.5, 1.0), "d": (3.0, 9.0), "e": (0.5, 1.0)}
    grid = [SimpleNamespace(error=None, metrics={"reward": r, "kl": k, "id": n}) for n, (r, k) in pts.items()]
    grid.append(SimpleNamespace(error=RuntimeError("x"), metrics={"reward": 99.0, "kl": 0.0, "id": "err"}))
    front = best_results(grid, ["reward", "kl"], ["max", "min"])
    # By hand: b dominates a (more reward, less KL); c/e (least KL) and d (most reward) are undominated.
    assert sorted(r.metrics["id"] for r in front) == ["b", "c", "d", "e"]


# ---------------------------------------------------------------- real sweeps


@pytest.mark.slow
def test_grid_sweep_with_asha_reports_every_step_and_stops_the_weak_trial(local_ray, tmp_path):
    base = tiny_base(tmp_path, "run.save_every=2")
    # ASHA on the reported learning rate (deterministic: the 1e-5 trial's lr is 100x lower at every step); one
    # trial at a time, so the 1e-3 trial sets the bar at step 2 and the 1e-5 trial is stopped there.
    grid = run_sweep(base, {"optim.lr": {"grid": [1e-3, 1e-5]}}, name="grid", metric="lr", mode="max",
                     scheduler="asha", scheduler_args={"grace_period": 2}, max_concurrent_trials=1)
    df = results_frame(grid)
    assert sorted(df["trial_id"].unique()) == sorted(r.metrics["trial_id"] for r in grid) and len(grid) == 2
    steps = {lr: list(g["step"]) for lr, g in df.groupby("optim.lr")}
    assert steps == {1e-3: list(range(1, STEPS + 1)), 1e-5: [1, 2]}
    assert df["error"].isna().all() and grid.num_terminated == 2
    lr_ratio = df[df["step"] <= 2].groupby("step")["lr"].agg(lambda s: s.max() / s.min())
    assert lr_ratio.to_numpy() == pytest.approx([100.0, 100.0])
    for col in ("loss", "rewards/margin", "kl/chosen", "mask/reward/chosen/sparsity"):
        assert df[col].notna().all(), col
    # Each trial's Train run stored its checkpoints under the trial; the reported paths point there.
    for r in grid:
        ckpts = [p for p in df.loc[df["trial_path"] == r.path, "checkpoint_path"] if isinstance(p, str)]
        assert ckpts and all(p.startswith(f"{r.path}/train/checkpoint_") for p in ckpts)
        # TensorBoard events hold the same losses as the progress table.
        tb = tb_scalars(Path(r.path), "ray/tune/loss")
        mine = df[df["trial_path"] == r.path].set_index("training_iteration")["loss"].to_dict()
        assert tb == pytest.approx(mine, rel=1e-6)
    # A trial Tune stops leaves its Train placement group to Ray Train's cleaner, which needs the State API
    # (no dashboard here): free it so the next tests get the whole cluster.
    for pg_id, pg in placement_group_table().items():
        if pg["state"] == "CREATED":
            remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id))))
    csv = save_results(grid)
    assert pd.read_csv(csv)[["trial_id", "step", "loss"]].equals(df[["trial_id", "step", "loss"]])
    with pytest.raises(FileExistsError, match="pass resume=True"):
        run_sweep(base, {"optim.lr": {"grid": [1e-3]}}, name="grid")


@pytest.mark.slow
def test_optuna_multi_objective_runs_two_trials(local_ray, tmp_path):
    base = tiny_base(tmp_path)
    space = {
        "loss.beta": {"uniform": [0.05, 0.5]},
        "mask_kind": {"variants": {"common": {"mask.sharing": "common"}, "mapo": {"method": "mapo"}}},
    }
    metric, mode = ["rewards/margin", "kl/chosen"], ["max", "min"]
    grid = run_sweep(base, space, search="optuna", num_samples=2, metric=metric, mode=mode, name="optuna")
    df = results_frame(grid)
    assert len(grid) == 2 and grid.num_errors == 0
    assert df.groupby("trial_id")["step"].apply(list).tolist() == [list(range(1, STEPS + 1))] * 2
    assert df["loss.beta"].between(0.05, 0.5).all() and set(df["mask_kind"]) <= {"common", "mapo"}
    assert df.groupby("trial_id")["loss.beta"].nunique().eq(1).all()
    # Variants also show as the config keys they set.
    assert ((df["mask_kind"] == "mapo") == (df["method"] == "mapo")).all()
    assert (df.loc[df["mask_kind"] == "common", "mask.sharing"] == "common").all()
    front = best_results(grid, metric, mode)
    assert 1 <= len(front) <= 2 and {r.metrics["trial_id"] for r in front} <= set(df["trial_id"])


@pytest.mark.slow
def test_killed_worker_inside_a_trial_resumes_and_reports_every_step(local_ray, tmp_path):
    base = tiny_base(tmp_path, "run.chaos_kill_at_step=2", "run.max_failures=1", "run.save_every=1")
    grid = run_sweep(base, {"loss.beta": 0.2}, name="chaos")
    (result,) = list(grid)
    assert result.error is None
    assert (Path(result.path) / ".chaos-train-2").exists()  # the worker really was killed at step 2
    df = results_frame(grid)
    assert list(df["step"]) == list(range(1, STEPS + 1)) and (df["loss.beta"] == 0.2).all()


@pytest.mark.slow
def test_failed_trial_keeps_its_params_and_error_in_the_table(local_ray, tmp_path):
    base = tiny_base(tmp_path, f"model.name={tmp_path / 'no-such-model'}")
    grid = run_sweep(base, {"loss.beta": 0.3}, name="fail")
    assert grid.num_errors == 1
    (row,) = results_frame(grid).to_dict("records")
    assert row["loss.beta"] == 0.3 and "no-such-model" in row["error"]


@pytest.mark.parametrize("package", ["mlflow", "wandb"])
def test_tracking_flags_need_their_package(tmp_path, package):
    import importlib.util

    if importlib.util.find_spec(package) is None:
        with pytest.raises(ImportError, match=f"pip install {package}"):
            run_sweep(tiny_base(tmp_path), {"loss.beta": 0.1}, name="x", **{package: True})
    else:  # installed: the sweep gets its logger callback
        from sparsepo.sweeps.callbacks import logger_callbacks

        names = [type(c).__name__.lower() for c in logger_callbacks(True, package == "mlflow", package == "wandb", "x")]
        assert any(package in n for n in names)


@pytest.mark.slow
def test_a_local_mode_trial_reports_to_tune_what_a_worker_group_trial_reports(local_ray, tmp_path):
    base = tiny_base(tmp_path, "run.save_every=2", "optim.bf16=false")
    grid = run_sweep(base, {"run.num_workers": {"grid": [0, 1]}}, name="local", metric="loss", mode="min",
                     max_concurrent_trials=1)
    assert len(grid) == 2 and grid.num_errors == 0
    df = results_frame(grid)
    trials = dict(list(df.groupby("run.num_workers")))
    assert sorted(trials) == [0, 1]
    for rows in trials.values():
        assert list(rows["step"]) == list(range(1, STEPS + 1))
        # The checkpoint path key (which the frontier's evaluations read) at the saving steps, inside the trial.
        saved = rows.dropna(subset=["checkpoint_path"])
        assert list(saved["step"]) == [2, 4]
        trial_path = rows["trial_path"].iloc[0]
        assert all(p.startswith(f"{trial_path}/train/checkpoint_") for p in saved["checkpoint_path"])
        assert [s for s, _ in complete_checkpoints(f"{trial_path}/train")] == [2, 4]
    keys = {n: set(rows.dropna(axis=1, how="all").columns) for n, rows in trials.items()}
    assert keys[0] == keys[1]
    assert list(trials[0]["loss"]) == pytest.approx(list(trials[1]["loss"]), rel=2e-4, abs=2e-5)


@pytest.mark.slow
def test_a_killed_local_mode_trial_resumes_from_its_checkpoint_when_the_sweep_is_resumed(local_ray, tmp_path):
    # Local mode restarts no worker (run.max_failures=0): the killed process is the trial's actor, so the trial
    # errors; resuming the sweep reruns it, and its loop continues from the step-2 checkpoint in storage.
    base = tiny_base(tmp_path, "run.num_workers=0", "run.save_every=2", "run.chaos_kill_at_step=3")
    assert run_sweep(base, {"loss.beta": 0.2}, name="crash").num_errors == 1
    grid = run_sweep(base, {"loss.beta": 0.2}, name="crash", resume=True)
    (result,) = list(grid)
    assert result.error is None and (Path(result.path) / ".chaos-train-3").exists()
    df = results_frame(grid)
    assert list(df["step"]) == list(range(1, STEPS + 1))  # steps 1-2 from the checkpoint's history, 3-4 trained
    assert [s for s, _ in complete_checkpoints(f"{result.path}/train")] == [2, 4]
