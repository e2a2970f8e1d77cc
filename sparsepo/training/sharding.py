"""Sharded policies (``run.strategy=fsdp``): FSDP2 ``fully_shard`` of the trainable :class:`PreferenceModel`.

What is sharded, over all workers (a 1-D device mesh):

* each transformer block of the policy is its own FSDP unit, all-gathered just before its forward and backward
  and freed after; with bf16 mixed precision (``optim.bf16`` where :func:`sparsepo.training.hardware.mixed_precision`
  turns autocast on) its gathered weights are bf16 (half the all-gather) and gradients are reduced in fp32;
* the root unit is the whole ``PreferenceModel``: embeddings, final norm, LM head and the mask networks stay fp32
  (the fp32 LM head of :mod:`sparsepo.training.forward`) and are gathered for the duration of ``PreferenceModel.forward``,
  so the chunked / fused LM head (:mod:`sparsepo.training.fused_head`) and the masks read plain unsharded weights there.

Parameters, gradients and AdamW state live as ``DTensor`` shards: per worker ``1 / world`` of the policy's.
The frozen reference is *not* sharded: each worker keeps its own copy (no gradients, no optimizer state; the
policy's training state is what sharding saves). Its MaPO hooks and hidden states are therefore unchanged.

Checkpoints (see :mod:`sparsepo.training.checkpoint`): every rank writes its shard of the model and optimizer state with
``torch.distributed.checkpoint`` into ``sharded/`` (Ray Train merges the ranks' folders into one checkpoint),
used to resume; rank 0 also writes ``policy/``, one ``save_pretrained`` folder of the gathered weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from sparsepo.objectives.masks import find_blocks
from sparsepo.training.hardware import mixed_precision

SHARDED_DIR = "sharded"  # torch.distributed.checkpoint folder: one .distcp file per rank + .metadata


def block_precision(device: torch.device, bf16: bool) -> MixedPrecisionPolicy:
    """bf16 gathered weights and fp32 gradient reduction for the transformer blocks where ``optim.bf16`` runs
    bf16 (:func:`mixed_precision`); the storage dtype otherwise."""
    if mixed_precision(device, bf16) is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard_model(model: nn.Module, policy: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """Shard ``model`` (a ``PreferenceModel`` holding ``policy``) in place over the default process group.

    Call once, after the masks are calibrated and before building the optimizer (which must see the DTensor
    parameters). Returns ``model`` (its class becomes an ``FSDPModule`` subclass; calls are unchanged).
    """
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    precision = block_precision(device, bf16)
    for block in find_blocks(policy):
        fully_shard(block, mesh=mesh, mp_policy=precision)
    # The root stays fp32: the LM head of sparsepo.training.forward runs in fp32, the masks are tiny.
    fully_shard(model, mesh=mesh)
    return model


def enable_activation_checkpointing(policy: nn.Module) -> None:
    """``run.activation_checkpointing``: recompute each block's activations in backward instead of keeping
    them (memory ~ one block's activations instead of all blocks'; one more block forward per step).
    Non-reentrant, so it composes with FSDP's hooks and with parameters that do not need grad."""
    policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def is_sharded(model: nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


def local(value: Tensor) -> Tensor:
    """A DTensor (a total norm of sharded gradients) as the plain full tensor every rank agrees on."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The gathered (unsharded) state dict of ``model`` on CPU, on rank 0 only (``{}`` elsewhere).

    A collective: every rank must call it. Peak memory on rank 0: one full copy of the model on CPU.
    """
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def sub_state(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix.`` with the prefix removed (``policy.`` -> the HF model's keys)."""
    return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}


def save_sharded(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """This rank's shards of ``model`` and ``optimizer`` into ``path / SHARDED_DIR`` (a collective).

    Every rank may write into its own local folder: the files are named by rank (``__<rank>_0.distcp``, rank 0
    adds ``.metadata``) and Ray Train merges the ranks' reported folders into one checkpoint.
    """
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path / SHARDED_DIR))


def load_sharded(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Restore ``model`` and ``optimizer`` (already sharded / built, on any rank) from ``path / SHARDED_DIR``."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path / SHARDED_DIR))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])

