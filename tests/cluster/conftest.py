"""Helpers of the cluster tier: a tiny sweep's config and the keys of a bucket on the S3 server."""

from __future__ import annotations

import boto3

from sparsepo.config.schema import TrainConfig
from tests.sparsepo.sweeps.test_tuning import tiny_base


def sweep_base(storage: str, steps: int, *over: str) -> TrainConfig:
    """The sweep tests' tiny SparsePO config (``tiny_base``) for ``steps`` steps, one CPU per Train worker, runs in
    ``storage``."""
    return tiny_base(storage, f"optim.max_steps={steps}", "run.cpus_per_worker=1", *over)


def bucket_keys(bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``s3://bucket`` (all pages)."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket.removeprefix("s3://"),
                                                                          Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]
