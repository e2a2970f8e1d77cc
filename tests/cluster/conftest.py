"""Helpers of the cluster tier: a tiny sweep's config and the keys of a bucket on the S3 server."""

from __future__ import annotations

import boto3

from sparsepo.config import TrainConfig, load_config


def sweep_base(storage: str, steps: int, *over: str) -> TrainConfig:
    """The tiny SparsePO smoke config: ``steps`` steps of 2 pairs, one CPU per Train worker, runs in ``storage``."""
    return load_config("configs/smoke/sparsepo.yaml", [
        "model.name=tiny-llama", "data.path=offline:review-pairs", "data.limit=16", "data.max_length=64",
        "data.max_prompt_length=40", f"optim.max_steps={steps}", "optim.batch_size=2", "run.chunk_size=64",
        "run.cpus_per_worker=1", f"run.storage_path={storage}", *over,
    ])


def bucket_keys(bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``s3://bucket`` (all pages)."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket.removeprefix("s3://"),
                                                                          Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]
