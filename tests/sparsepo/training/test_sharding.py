"""run.strategy=fsdp on CPU/gloo with 2 Ray Train workers: the same losses as DDP, a sharded checkpoint that
exports one save_pretrained folder of the gathered weights, and an exact resume from the shards."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from sparsepo.config.schema import ConfigError, load_config
from sparsepo.training.checkpoint import complete_checkpoints
from sparsepo.training.sharding import SHARDED_DIR
from sparsepo.training.train import make_trainer

# fp32 (optim.bf16=false) on both sides: FSDP reduce-scatters and DDP all-reduces the same per-rank gradients, so
# the runs differ only in summation order (~1e-7 relative per step), amplified over a few Adam steps at lr=1e-3
# (Adam normalises tiny gradients). The tolerance is the one tests/sparsepo/training/test_trainer.py uses for 1 vs 2 workers.
SAME = {"rel": 2e-4, "abs": 2e-5}


def cfg(tmp_path, name, method, **over):
    base = {
        "method": method, "model.name": "tiny-llama", "data.path": "offline:review-pairs", "data.limit": 16,
        "data.max_length": 64, "data.max_prompt_length": 40, "optim.lr": 1e-3, "optim.max_steps": 3,
        "optim.warmup_ratio": 0, "optim.batch_size": 2, "optim.bf16": "false", "run.num_workers": 2,
        "run.chunk_size": 64, "run.storage_path": tmp_path, "run.name": name, "loss.beta": 0.5,
    }
    if method == "sparsepo":
        base.update({"mask.kind": "learned", "loss.l1_u": 0.001})
    return load_config(None, [f"{k}={v}" for k, v in {**base, **over}.items()])


def losses(result):
    return [m["loss"] for m in result.return_value]


@pytest.mark.slow
def test_fsdp_with_activation_checkpointing_gives_the_ddp_losses_for_dpo(local_ray, tmp_path):
    ddp = make_trainer(cfg(tmp_path, "ddp", "dpo")).fit()
    fsdp = make_trainer(cfg(tmp_path, "fsdp", "dpo", **{"run.strategy": "fsdp", "run.activation_checkpointing": "true"})).fit()
    a, b = losses(ddp), losses(fsdp)
    assert len(a) == len(b) == 3 and a[0] != a[-1]  # training moved
    assert b == pytest.approx(a, **SAME)


@pytest.mark.slow
def test_fsdp_sparsepo_matches_ddp_exports_gathered_weights_and_resumes_from_shards(local_ray, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    four = {"optim.max_steps": 4, "run.save_every": 2}
    ddp = make_trainer(cfg(tmp_path, "ddp", "sparsepo", **four)).fit()
    fsdp = make_trainer(cfg(tmp_path, "fsdp", "sparsepo", **four, **{"run.strategy": "fsdp"})).fit()
    assert losses(fsdp) == pytest.approx(losses(ddp), **SAME)
    assert any(m["grad_norm/masks"] > 0 for m in fsdp.return_value)  # the sharded mask networks are trained

    # One save_pretrained folder of the gathered weights: equal to the merged shards of both ranks.
    ckpt = fsdp.checkpoint.path
    shards = sorted(p.name for p in (Path(ckpt) / SHARDED_DIR).iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]  # both ranks' shards, merged by Ray
    exported = AutoModelForCausalLM.from_pretrained(f"{ckpt}/policy").state_dict()
    dcp_to_torch_save(f"{ckpt}/{SHARDED_DIR}", tmp_path / "gathered.pt")
    gathered = torch.load(tmp_path / "gathered.pt", weights_only=False)["model"]
    assert {f"policy.{k}" for k in exported} <= set(gathered)
    for k, v in exported.items():
        assert torch.equal(v, gathered[f"policy.{k}"]), k
    assert set(load_file(f"{ckpt}/policy/model.safetensors")) <= set(exported)
    masks = torch.load(f"{ckpt}/masks.pt")
    assert masks and all(torch.equal(v, gathered[f"masks.{k}"]) for k, v in masks.items())

    # A new run from the step-2 checkpoint (sharded model + AdamW state) continues as if uninterrupted.
    (step, path), = [c for c in complete_checkpoints(str(tmp_path / "fsdp")) if c[0] == 2]
    resumed = make_trainer(cfg(tmp_path, "resumed", "sparsepo", **four, **{"run.strategy": "fsdp", "run.resume_from": path})).fit()
    assert [m["step"] for m in resumed.return_value] == [1, 2, 3, 4]
    assert losses(resumed) == pytest.approx(losses(fsdp), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    ("over", "key"),
    [(["lora.r=4"], "run.strategy"), (["run.evaluator=sparsepo.evaluation.sentiment:SentimentEvaluator"], "run.evaluator")],
)
def test_fsdp_refuses_what_it_does_not_shard_naming_the_key(over, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, ["run.strategy=fsdp", *over])


def test_strategy_is_checked_at_load():
    with pytest.raises(ConfigError, match="run.strategy"):
        load_config(None, ["run.strategy=zero3"])
