"""Several Ray nodes on this machine (``ray.cluster_utils.Cluster``) with run storage on a real S3 server (moto).

On the ``multinode`` cluster (a head without CPUs, two 2-CPU worker nodes) a Train worker of 2 CPUs fills a node, so
the two workers of a run sit on different nodes: DDP's gradients cross nodes and rank 0 writes the checkpoints to S3
from its own node. A YAML sweep through the ``sweep`` command runs its trials on the worker nodes, storage on S3.
"""

import boto3
import pytest
import ray

from tests.sparsepo.training.test_trainer import losses, tiny_cfg


def test_ddp_across_two_nodes_on_s3_equals_one_worker_and_checkpoints_land_in_the_bucket(multinode, s3_bucket):
    from sparsepo.training.train import make_trainer

    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 3 and sorted(n["Resources"].get("CPU", 0) for n in alive) == [0, 2, 2]
    common = {"run.cpus_per_worker": 2, "optim.max_steps": 4, "run.save_every": 2}
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


def test_a_yaml_sweep_through_the_sweep_command_on_s3(multinode, s3_bucket, tmp_path):
    import io

    import pandas as pd

    from sparsepo.sweeps.sweep import main

    space = tmp_path / "space.yaml"
    space.write_text("loss.beta: {grid: [0.1, 0.5]}\n")
    rc = main(["--config", "configs/smoke/sparsepo.yaml", "--space", str(space), "--metric", "loss", "--mode", "min",
               "--storage-path", f"{s3_bucket}/runs", "--name", "yaml", "--max-concurrent-trials", "2",
               "model.name=tiny-llama", "data.path=offline:review-pairs", "data.limit=16", "data.max_length=64",
               "data.max_prompt_length=40", "optim.max_steps=3", "optim.batch_size=2", "run.cpus_per_worker=1"])
    assert rc == 0
    body = boto3.client("s3").get_object(Bucket=s3_bucket.removeprefix("s3://"), Key="runs/yaml/results.csv")["Body"]
    table = pd.read_csv(io.BytesIO(body.read()))
    assert sorted(table["loss.beta"].unique()) == [0.1, 0.5]
    assert table.groupby("trial_id")["step"].apply(list).tolist() == [[1, 2, 3]] * 2
