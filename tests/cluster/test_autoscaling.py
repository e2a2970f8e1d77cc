"""The autoscaling path on Ray's fake multi-node provider (``ray.cluster_utils.AutoscalingCluster``): a sweep on a
cluster that starts with a head of no CPUs gets worker nodes launched for its pending trials, writes everything to
the S3 server, and the nodes are removed once idle."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import AutoscalingCluster

from sparsepo.sweeps.tuning import results_frame, run_sweep
from tests.cluster.conftest import bucket_keys, sweep_base

STEPS = 4
IDLE_TIMEOUT_S = 6


class LocalAutoscalingCluster(AutoscalingCluster):
    """``AutoscalingCluster`` with its config written here: Ray's wheel leaves out the example YAML it reads."""

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **kw):  # noqa: ANN001, ANN202
        empty = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                 "head_start_ray_commands", "worker_start_ray_commands", "cluster_synced_files", "rsync_exclude",
                 "rsync_filter")
        return {
            "cluster_name": "sparsepo-fake", "max_workers": 4, "head_node_type": "ray.head.default",
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True},
            "available_node_types": {**worker_node_types, "ray.head.default": {
                "resources": head_resources, "node_config": {}, "max_workers": 0}},
            "auth": {}, "docker": {}, "file_mounts": {}, "file_mounts_sync_continuously": False,
            "upscaling_speed": 1.0, "idle_timeout_minutes": IDLE_TIMEOUT_S / 60, **dict.fromkeys(empty, []), **kw,
        }


@pytest.fixture(scope="module")
def autoscaling(s3_server):
    """A head with no CPUs and up to two 2-CPU worker nodes, none at the start."""
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{path}"  # the fake provider runs `ray start` by name
    cluster = LocalAutoscalingCluster(
        head_resources={"CPU": 0},
        worker_node_types={"cpu2": {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 0, "max_workers": 2}},
    )
    cluster.start()
    ray.init(address="auto")
    yield
    ray.shutdown()
    cluster.shutdown()
    os.environ["PATH"] = path


def worker_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)


def test_a_sweep_launches_nodes_for_its_trials_and_they_are_removed_when_idle(autoscaling, s3_bucket):
    assert worker_nodes() == 0
    seen, done = [], threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(worker_nodes())
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    base = sweep_base(f"{s3_bucket}/runs", STEPS, "run.save_every=2")
    grid = run_sweep(base, {"loss.beta": {"grid": [0.1, 0.5]}}, name="auto", max_concurrent_trials=2)
    done.set()
    df = results_frame(grid)
    assert grid.num_errors == 0
    assert df.groupby("trial_id")["step"].apply(list).tolist() == [list(range(1, STEPS + 1))] * 2
    assert max(seen) == 2  # one node per trial (driver + Train worker: 2 CPUs), launched while they were pending
    keys = bucket_keys(s3_bucket, "runs/auto/")
    assert sum(k.endswith("policy/model.safetensors") for k in keys) >= 2  # each trial's checkpoints in the bucket
    deadline = time.time() + 20 * IDLE_TIMEOUT_S
    while worker_nodes() and time.time() < deadline:
        time.sleep(1)
    assert worker_nodes() == 0, "idle worker nodes were not removed"
