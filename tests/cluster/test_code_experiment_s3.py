"""The code experiment end to end on several Ray nodes (the ``multinode`` cluster) with its storage on the S3 server
(moto's): the SFT stage trains into the bucket
and hands the later stages a ``s3://`` URI, which the driver's sampling, the Train workers and the model
fingerprints load from there; the pairs are published to the bucket for the workers."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from sparsepo.experiments.code.experiment import CodeConfig, run_code
from sparsepo.generation import register_backend
from tests.cluster.conftest import bucket_keys
from tests.sparsepo.experiments.code.test_experiment import EVAL, TRAIN, Canned

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_code_pipeline_on_s3_storage_and_two_worker_nodes(multinode, s3_bucket, tmp_path, monkeypatch):
    from sparsepo.assets import cache_dir

    register_backend("canned", Canned)
    monkeypatch.chdir(tmp_path)  # the report goes to ./<name>
    storage = f"{s3_bucket}/runs"
    copies, locks = cache_dir() / "remote", cache_dir() / ".locks"  # the driver's downloads
    before = set(copies.glob("*")) | set(locks.glob("*"))
    node_copies = [cache / "remote" for cache in multinode[2]]  # each worker node's own
    cfg = CodeConfig(
        model="tiny-llama", sft_steps=1, sft_data={"suite": "humaneval", "task_ids": ["HumanEval/60", "HumanEval/61"]},
        backend="canned", train={"suite": "humaneval", "task_ids": TRAIN},
        eval_suites={"humaneval": {"suite": "humaneval", "task_ids": EVAL}}, pair_samples=4, methods=("dpo",),
        steps=1, batch_size=2, lr=1e-4, max_length=256, max_prompt_length=192, eval_n=2, eval_plan=((0.8, (1,)),),
        eval_tokens=4, storage_path=storage, name="code-remote",
    )
    try:
        logged: list[str] = []
        files = run_code(cfg, log=logged.append)
        sft = next(line for line in logged if line.startswith("[code] sft: ")).rsplit(": ", 1)[1]
        assert sft.startswith(f"{storage}/sft/code-sft-") and sft.endswith("/policy")
        assert f"SFT model `{sft}`" in files["report"].read_text()
        assert files["report"].resolve().parent == tmp_path / "code-remote"  # ./<name> for a remote storage
        table = pd.read_csv(files["table"])
        assert table["Method"].tolist() == ["SFT", "dpo"] and table["HumanEval pass@1"].between(0, 100).all()
        keys = bucket_keys(s3_bucket, "runs/")
        assert any(k.startswith("runs/sft/code-sft-") and k.endswith("policy/model.safetensors") for k in keys)
        assert any(k.startswith("runs/code-remote/") for k in keys)  # pairs published for the workers
        loaded = [any(p.name.startswith("policy-") for p in c.glob("*")) for c in node_copies]
        assert any(loaded), "no worker node downloaded the SFT policy from the bucket"
    finally:
        for p in (set(copies.glob("*")) | set(locks.glob("*"))) - before:  # leave the shared cache as it was
            shutil.rmtree(p) if p.is_dir() else p.unlink()
