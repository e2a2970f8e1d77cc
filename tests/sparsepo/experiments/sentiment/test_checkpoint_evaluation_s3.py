"""Checkpoint evaluation on object storage (a real S3 server, moto's) and several Ray nodes: the tiny frontier with
``eval_mode=checkpoints`` and ``--storage-path s3://...`` on a head without CPUs and two worker nodes, a failed
evaluation, and a resumed sweep's callback."""

import os
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest

from sparsepo.experiments.sentiment.evaluation import CheckpointEvaluations, evaluate_checkpoints
from sparsepo.experiments.sentiment.frontier import FrontierConfig, run_frontier


def read(uri: str) -> str:
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as f:
        return f.readall().decode()


@pytest.fixture(scope="module")
def s3_run(multinode, tmp_path_factory):
    """The tiny frontier, DPO only, 2 steps, checkpoints evaluated by Ray tasks, everything on the S3 server."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="frontier")
    lines = []
    cfg = FrontierConfig(model="tiny-llama", methods=("dpo",), betas=(0.5,), steps=2, eval_every=1, n_train_prompts=24,
                         n_test_prompts=5, eval_tokens=6, pair_tokens=12, storage_path="s3://frontier/runs",
                         name="fr-s3", n_resamples=200, batch_size=2, eval_mode="checkpoints")
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))  # with remote storage the outputs are also written to ./<name>
    try:
        files = {k: Path(v).resolve() for k, v in run_frontier(cfg, log=lines.append).items()}
    finally:
        os.chdir(cwd)
    return cfg, files, lines


@pytest.mark.slow
def test_the_frontier_on_s3_evaluates_each_checkpoint_once_during_the_sweep_and_writes_its_report_there(s3_run, multinode):
    cfg, files, lines = s3_run
    assert any("2 checkpoints evaluated by Ray tasks (hf) during the sweep, 0 after it" in ln for ln in lines), lines
    from ray.util.state import list_tasks

    tasks = list_tasks(filters=[("name", "=", "_evaluate_checkpoint")], detail=True, limit=1000)
    workers = {n.node_id for n in multinode[1]}
    assert len(tasks) == 2 and {t.node_id for t in tasks} <= workers  # on the worker nodes, reading from S3
    assert not any("failed twice" in ln for ln in lines), lines
    points = pd.read_csv(files["points"])
    dpo = points[points["method"] == "dpo"]
    assert sorted(dpo["step"]) == [1, 2] and dpo[["reward", "kl"]].notna().all().all()
    assert "Reference point" in read("s3://frontier/runs/fr-s3/report/report.md")
    assert read("s3://frontier/runs/fr-s3/report/points.csv") == files["points"].read_text()


@pytest.mark.slow
def test_a_failed_evaluation_is_retried_then_reported_by_trial_and_step_and_the_others_are_kept(s3_run):
    cfg, files, _ = s3_run
    fs, root = pyarrow.fs.FileSystem.from_uri("s3://frontier/runs/fr-s3-sweep")
    trials = [i.path for i in fs.get_file_info(pyarrow.fs.FileSelector(root)) if i.base_name.startswith("trial_")]
    checkpoints = sorted(i.path for i in fs.get_file_info(pyarrow.fs.FileSelector(f"{trials[0]}/train"))
                         if i.base_name.startswith("checkpoint_"))
    fs.delete_file(f"{checkpoints[0]}/policy/config.json")  # a checkpoint that cannot be loaded any more
    failed = []
    args = {"prompts": ["this movie was", "i hated the"], "reward": "vader", "ref": "tiny-llama", "max_new_tokens": 4}
    rows = evaluate_checkpoints({"t": f"s3://{trials[0]}"}, args, failed=failed)
    assert rows["step"].tolist() == [2] and rows["eval/reward"].notna().all()
    assert [(f["trial_id"], f["step"]) for f in failed] == [("t", 1)]
    assert failed[0]["path"] == f"s3://{checkpoints[0]}"


@pytest.mark.slow
def test_a_resumed_sweep_sends_its_trials_events_to_the_drivers_fresh_callback(s3_run):
    from ray import tune

    from sparsepo.sweeps.tuning import _restored_tuner, trial_trainable

    fresh = CheckpointEvaluations({"prompts": []}, storage="s3://frontier/runs")
    tuner = _restored_tuner("s3://frontier/runs/fr-s3-sweep", trial_trainable, [fresh])
    callbacks = tuner._local_tuner.get_run_config().callbacks
    ours = [c for c in callbacks if isinstance(c, CheckpointEvaluations)]
    assert ours == [fresh] and ours[0] is fresh  # the pickled copy is replaced, not kept beside it
    assert any(not isinstance(c, CheckpointEvaluations) for c in callbacks)  # the loggers stay
    assert tune.Tuner.can_restore("s3://frontier/runs/fr-s3-sweep")
