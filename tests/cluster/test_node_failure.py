"""A worker node dies mid-sweep (``ray.cluster_utils.Cluster``, storage on the S3 server): the sweep still ends with
every point and every step exactly once, continuing from the checkpoints in the bucket."""

from __future__ import annotations

import threading
import time

import pytest
import ray
from ray.util.state import list_actors

from sparsepo.sweeps.tuning import results_frame, run_sweep, saved_history
from tests.cluster.conftest import bucket_keys, sweep_base
from tests.conftest import free_port

STEPS = 8
# Dead nodes are noticed within a few seconds rather than Ray's default half a minute.
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                      "health_check_failure_threshold": 3}


@pytest.fixture
def cluster(s3_server):
    """A head with no CPUs and three 2-CPU worker nodes: each holds one trial (driver + Train worker); two trials
    at a time leave one node spare for the work of a node that dies."""
    from ray.cluster_utils import Cluster

    # The dashboard serves the State API that finds the Train workers' nodes.
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "dashboard_port": free_port(),
                                                      "_system_config": FAST_HEALTH_CHECKS})
    nodes = [c.add_node(num_cpus=2) for _ in range(3)]
    ray.init(address=c.address)
    yield c, nodes
    ray.shutdown()
    c.shutdown()


def wait_for_checkpoint(bucket: str, prefix: str, step: int, timeout: float = 300) -> None:
    """Until some trial's checkpoint of ``step`` (or later) is complete in the bucket (its metrics file is its last)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for key in bucket_keys(bucket, prefix):
            if key.endswith("/metrics.jsonl") and "/checkpoint_" in key:
                history = saved_history(f"{bucket}/{key.rsplit('/checkpoint_', 1)[0]}")
                if history and history[-1]["step"] >= step:
                    return
        time.sleep(1)
    raise TimeoutError(f"no checkpoint of step {step} under {bucket}/{prefix}")


def test_a_worker_node_killed_mid_sweep_loses_no_point_and_repeats_no_step(cluster, s3_bucket):
    c, nodes = cluster
    base = sweep_base(f"{s3_bucket}/runs", STEPS, "run.save_every=2", "run.max_failures=3")
    killed = {}

    def kill_a_node() -> None:
        wait_for_checkpoint(s3_bucket, "runs/faults/", 2)
        busy = {a.node_id for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                if a.class_name == "RayTrainWorker"}
        victim = next(n for n in nodes if n.node_id in busy)
        c.remove_node(victim, allow_graceful=False)  # its raylet and every process on it, without warning
        killed["node"] = victim.node_id

    killer = threading.Thread(target=kill_a_node, daemon=True)
    killer.start()
    grid = run_sweep(base, {"loss.beta": {"grid": [0.1, 0.5]}}, name="faults", max_concurrent_trials=2)
    killer.join(timeout=5)
    assert "node" in killed, "no node was killed while the sweep ran"
    assert [n["NodeID"] for n in ray.nodes() if not n["Alive"]] == [killed["node"]]
    df = results_frame(grid)
    assert grid.num_errors == 0 and df["error"].isna().all()
    assert df.groupby("trial_id")["step"].apply(list).tolist() == [list(range(1, STEPS + 1))] * 2
    for path in df["trial_path"].unique():  # each trial's last checkpoint holds its whole history, once
        assert [m["step"] for m in saved_history(f"{path}/train")] == list(range(1, STEPS + 1))
