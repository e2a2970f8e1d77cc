"""``run.num_workers=0``: Ray Train's local mode, the loop in this process, checkpoints persisted as with workers."""

import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM

from sparsepo.config.schema import ConfigError, load_config
from sparsepo.training.checkpoint import complete_checkpoints, last_policy
from sparsepo.training.local_mode import local_device, use_run_cpus
from sparsepo.training.train import fit, make_trainer
from tests.sparsepo.training.test_trainer import losses, tiny_cfg

REPO = Path(__file__).resolve().parents[3]
LOCAL = {"run.num_workers": 0, "optim.batch_size": 2}


def steps_of(result) -> list[int]:
    return [m["step"] for m in result.return_value]


# ---------------------------------------------------------------- config and process settings (no training)


def test_local_mode_refuses_worker_restarts_and_sharding_naming_the_keys():
    assert load_config(None, ["run.num_workers=0"]).run.num_workers == 0
    with pytest.raises(ConfigError, match=r"run\.max_failures: run\.num_workers=0 \(local mode\)"):
        load_config(None, ["run.num_workers=0", "run.max_failures=1"])
    with pytest.raises(ConfigError, match=r"run\.max_failures"):
        load_config(None, ["run.num_workers=0", "run.max_failures=-1"])
    with pytest.raises(ConfigError, match=r"run\.strategy: fsdp .* run\.num_workers=0"):
        load_config(None, ["run.num_workers=0", "run.strategy=fsdp"])
    with pytest.raises(ConfigError, match=r"run\.num_workers"):
        load_config(None, ["run.num_workers=-1"])
    assert load_config(None, ["run.num_workers=1", "run.max_failures=1"]).run.max_failures == 1


def test_local_mode_uses_the_cpus_the_run_was_given_as_torch_threads():
    before = torch.get_num_threads()
    try:
        assert use_run_cpus(load_config(None, ["run.num_workers=0", "run.cpus_per_worker=1"])) == 1
        assert torch.get_num_threads() == 1
        assert use_run_cpus(load_config(None, ["run.num_workers=0", "run.cpus_per_worker=1000"])) == len(
            os.sched_getaffinity(0))  # never more threads than cores
    finally:
        torch.set_num_threads(before)


def test_local_mode_computes_on_this_process_cuda_device_only_with_use_gpu(monkeypatch):
    assert local_device(load_config(None, ["run.num_workers=0"])) == torch.device("cpu")
    gpu = load_config(None, ["run.num_workers=0", "run.use_gpu=true"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"run\.use_gpu: no CUDA device is visible"):
        local_device(gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert local_device(gpu) == torch.device("cuda", 0)


# ---------------------------------------------------------------- training (slow)


@pytest.mark.slow
def test_local_mode_trains_here_without_ray_and_stores_checkpoints_as_workers_do(tmp_path):
    assert not ray.is_initialized(), "another test left Ray running: this one checks local mode starts none"
    staged = set(glob.glob(os.path.join(tempfile.gettempdir(), "sparsepo-ckpt-*")))
    cfg = tiny_cfg(tmp_path, "local", **LOCAL, **{"run.save_every": 2, "run.keep_checkpoints": 2})
    result = fit(cfg)
    assert not ray.is_initialized()  # no Ray instance, not even a local one
    assert steps_of(result) == list(range(1, 7)) and losses(result)[0] != losses(result)[-1]
    # Registered in Ray's snapshot (complete_checkpoints reads it through Result.from_path), pruned to 2.
    found = complete_checkpoints(str(tmp_path / "local"))
    assert [s for s, _ in found] == [4, 6]
    assert sorted(glob.glob(str(tmp_path / "local" / "checkpoint_2*"))) == [p for _, p in found]
    assert result.checkpoint.path == found[-1][1] and result.path == str(tmp_path / "local")
    assert [s for _, s in ((c, m["step"]) for c, m in result.best_checkpoints)] == [4, 6]
    assert last_policy(str(tmp_path / "local")) == f"{found[-1][1]}/policy"
    assert AutoModelForCausalLM.from_pretrained(f"{found[-1][1]}/policy").config.model_type == "llama"
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "sparsepo-ckpt-*"))) <= staged  # staging deleted


@pytest.mark.slow
def test_a_killed_local_run_resumes_at_its_checkpoint_step_as_if_uninterrupted(tmp_path):
    common = {**LOCAL, "run.save_every": 3, "mask.kind": "random"}  # random masks: the RNG state matters
    clean = fit(tiny_cfg(tmp_path, "clean", **common))
    # The process itself is the worker: killed at step 5, after step 3's checkpoint.
    crash = {**common, "run.chaos_kill_at_step": 5}
    code = ("from sparsepo.training.train import fit\nfrom tests.sparsepo.training.test_trainer import tiny_cfg\n"
            f"fit(tiny_cfg({str(tmp_path)!r}, 'crash', **{crash!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILLed at step 5
    assert [s for s, _ in complete_checkpoints(str(tmp_path / "crash"))] == [3]
    resumed = fit(tiny_cfg(tmp_path, "crash", **common, **{"run.resume": True}))
    assert steps_of(resumed) == list(range(1, 7))  # steps 1-3 from the checkpoint's history, 4-6 trained
    assert losses(resumed) == pytest.approx(losses(clean), rel=1e-5, abs=1e-6)
    assert [s for s, _ in complete_checkpoints(str(tmp_path / "crash"))] == [3, 6]


@pytest.mark.slow
def test_local_mode_stores_and_prunes_checkpoints_on_s3(s3_bucket):
    import boto3

    cfg = tiny_cfg(f"{s3_bucket}/runs", "s3", **LOCAL,
                   **{"optim.max_steps": 3, "run.save_every": 1, "run.keep_checkpoints": 1})
    result = fit(cfg)
    run = f"{s3_bucket}/runs/s3"
    found = complete_checkpoints(run)
    assert [s for s, _ in found] == [3] and found[-1][1].startswith(f"{s3_bucket}/runs/s3/checkpoint_")
    assert result.checkpoint.path == found[-1][1].removeprefix("s3://")  # in its filesystem, as Ray gives it
    bucket = s3_bucket.removeprefix("s3://")
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    folders = {k.split("/")[2] for k in keys if k.startswith("runs/s3/checkpoint_2")}
    assert folders == {found[-1][1].rsplit("/", 1)[1]}  # steps 1 and 2 deleted from the bucket
    assert "runs/s3/checkpoint_manager_snapshot.json" in keys


@pytest.mark.slow
def test_local_mode_gives_the_losses_of_a_one_worker_train_run(tmp_path):
    local = fit(tiny_cfg(tmp_path, "local", **LOCAL))
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        worker = make_trainer(tiny_cfg(tmp_path, "worker", **{**LOCAL, "run.num_workers": 1})).fit()
    finally:
        ray.shutdown()
    assert steps_of(local) == steps_of(worker) == list(range(1, 7))
    assert losses(local)[0] != losses(local)[-1]
    # Same seed, same data order and updates; the thread counts may differ (summation order only).
    assert losses(local) == pytest.approx(losses(worker), rel=2e-4, abs=2e-5)
