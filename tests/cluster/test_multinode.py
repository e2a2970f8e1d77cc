"""Several Ray nodes on this machine (``ray.cluster_utils.Cluster``) with run storage on a real S3 server (moto).

The head node has no CPUs and each of two worker nodes one, so the two Train workers of a run must sit on
different nodes: DDP's gradients cross nodes and rank 0 writes the checkpoints to S3 from its own node.
"""

import boto3
import pytest
import ray

from tests.sparsepo.test_trainer import losses, tiny_cfg


@pytest.fixture(scope="module")
def cluster(s3_server):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [c.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=c.address)
    yield c, nodes
    ray.shutdown()
    c.shutdown()


def test_ddp_across_two_nodes_on_s3_equals_one_worker_and_checkpoints_land_in_the_bucket(cluster, s3_bucket):
    from sparsepo.train import make_trainer

    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 3 and sorted(n["Resources"].get("CPU", 0) for n in alive) == [0, 1, 1]
    common = {"run.cpus_per_worker": 1, "optim.max_steps": 4, "run.save_every": 2}
    two = make_trainer(tiny_cfg(s3_bucket + "/runs", "two-nodes",
                                **common, **{"optim.batch_size": 2, "run.num_workers": 2})).fit()
    one = make_trainer(tiny_cfg(s3_bucket + "/runs", "one-node",
                                **common, **{"optim.batch_size": 4, "run.num_workers": 1})).fit()
    assert two.error is None and len(losses(two)) == 4
    assert losses(two) == pytest.approx(losses(one), rel=2e-4, abs=2e-5)
    assert two.checkpoint.path.startswith(s3_bucket.removeprefix("s3://"))  # pyarrow's S3 paths: bucket/key
    bucket = s3_bucket.removeprefix("s3://")
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="runs/two-nodes/")["Contents"]]
    assert any(k.endswith("policy/model.safetensors") for k in keys), keys[:20]
    assert any(k.endswith("masks.pt") for k in keys)
