"""The Ray Train loop: ``train_loop_per_worker`` for ``TorchTrainer`` (CPU/gloo or GPU/nccl, DDP).

Each worker loads the policy and a frozen reference, builds the objective's mask networks, and trains with
AdamW (policy and mask-network parameter groups), a cosine schedule with warm-up, gradient accumulation and
clipping. Every ``log_every`` steps it reports the METHODS.md metrics (averaged over workers) and tokens/s;
every ``save_every`` steps and at the end rank 0 writes a checkpoint (see ``sparsepo.checkpoint``). A restarted
worker group resumes from ``ray.train.get_checkpoint()`` at the exact step, data position and RNG state.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import signal
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from transformers import get_cosine_schedule_with_warmup

from sparsepo.checkpoint import (
    MASKS_FILE,
    POLICY_DIR,
    load_history,
    load_train_state,
    remove_stale_staging,
    rng_state,
    save_checkpoint,
    set_rng_state,
    staging_dir,
)
from sparsepo.config import TrainConfig, from_dict
from sparsepo.data import PreferenceCollator, load_preference_data
from sparsepo.forward import AdaptersOff, unwrap_model
from sparsepo.hardware import mixed_precision, use_granted_cpus
from sparsepo.losses import get_loss
from sparsepo.masks import decay_groups, model_dims
from sparsepo.models import build_policy, load_causal_lm, load_tokenizer
from sparsepo.preference_model import PreferenceModel, Reference, tokens_in

# Ray Train V2 patches print() in workers to log *and* echo, so a printed line reaches the driver twice;
# a logger line reaches it once (and Train's per-worker log file).
log = logging.getLogger("sparsepo.trainer")


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(cfg: TrainConfig, model: PreferenceModel) -> torch.optim.AdamW:
    """AdamW: the policy's trainable parameters at ``optim.weight_decay``; mask Linear weights at ``mask.weight_decay``."""
    groups = [
        {"params": [p for p in model.policy.parameters() if p.requires_grad], "weight_decay": cfg.optim.weight_decay, "name": "policy"}
    ]
    if model.masks is not None:
        groups += decay_groups(model.masks, cfg.mask.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas))


def load_evaluator(spec: str | None, args: dict[str, Any]) -> Any:
    """``"module:factory"`` -> ``factory(**args)``: a callable ``(policy, ref | None, tokenizer, step) -> metrics``
    run on rank 0 (see ``sparsepo.eval.sentiment.SentimentEvaluator``)."""
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)(**args)


def _mean_over_workers(metrics: dict[str, float], world: int) -> dict[str, float]:
    if world == 1:
        return metrics
    keys = sorted(metrics)
    t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


def train_loop_per_worker(config: dict[str, Any]) -> list[dict[str, float]] | None:
    """Ray Train entry: ``config`` is ``TrainConfig.to_dict()``.

    Returns, on rank 0, every reported metrics dict of the run (carried across restarts in the checkpoints),
    which Ray exposes as ``Result.return_value``.
    """
    use_granted_cpus()  # torch threads = the CPUs Ray granted this worker
    cfg = from_dict(config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    seed_everything(cfg.run.seed)  # same seed on every rank: mask networks start identical
    remove_stale_staging()  # checkpoints staged by killed workers on this node

    ckpt = ray.train.get_checkpoint()
    if ckpt is None and cfg.run.resume_from:
        ckpt = ray.train.Checkpoint.from_directory(cfg.run.resume_from)
    with ckpt.as_directory() if ckpt is not None else tempfile.TemporaryDirectory() as d:
        resume_dir = Path(d) if ckpt is not None else None
        tokenizer = load_tokenizer(str(resume_dir / POLICY_DIR) if resume_dir else cfg.model.name)
        policy = build_policy(cfg, device, resume_dir)
        spec_ref = cfg.model.ref or cfg.model.name
        reference = None
        if get_loss(cfg.method).needs_reference:
            if cfg.lora.r > 0 and spec_ref == cfg.model.name:  # the policy's own frozen base: no second copy
                ref_model = AdaptersOff(policy)
            else:
                ref_model = load_causal_lm(spec_ref, dtype=cfg.model.dtype, gguf_file=cfg.model.gguf_file).to(device)
            reference = Reference(ref_model, cfg.method, cfg.mask)
        dims = model_dims(reference.model) if reference is not None else None
        model = PreferenceModel(
            policy, cfg.method, cfg.loss_hparams(), cfg.mask, dims, cfg.run.chunk_size, cfg.run.log_kl
        ).to(device)
        state = None
        if resume_dir is not None:
            if model.masks is not None and (resume_dir / MASKS_FILE).exists():
                model.masks.load_state_dict(torch.load(resume_dir / MASKS_FILE, map_location=device))
            if (resume_dir / "train_state.pt").exists():
                state = load_train_state(resume_dir)
            history = load_history(resume_dir)
        else:
            history = []

    dataset, report = load_preference_data(cfg.data, tokenizer)
    if rank == 0:
        log.info(f"[sparsepo] {report}")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.run.seed, drop_last=True)
    loader = DataLoader(
        dataset,
        batch_size=cfg.optim.batch_size,
        sampler=sampler,
        collate_fn=PreferenceCollator(tokenizer.pad_token_id),
        drop_last=True,
        # Its own generator: creating an iterator must not draw from the global RNG that resumes exactly.
        generator=torch.Generator().manual_seed(cfg.run.seed),
    )
    if len(loader) == 0:
        raise ValueError(
            f"{len(dataset)} pairs are too few for batch_size={cfg.optim.batch_size} x {world} workers; lower optim.batch_size"
        )
    accum = cfg.optim.grad_accum
    total = cfg.optim.max_steps or max(1, math.floor(cfg.optim.epochs * len(loader) / accum))

    ddp_model = ray.train.torch.prepare_model(model) if world > 1 else model
    optimizer = build_optimizer(cfg, model)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.optim.warmup_ratio * total), total)
    step = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        set_rng_state(state["rng"][rank % len(state["rng"])])
    evaluator = load_evaluator(cfg.run.evaluator, cfg.run.evaluator_args) if rank == 0 else None
    autocast = mixed_precision(device, cfg.optim.bf16)

    def batches():
        consumed = step * accum
        epoch, skip = divmod(consumed, len(loader))
        while True:
            sampler.set_epoch(epoch)
            for i, b in enumerate(loader):
                if i >= skip:
                    yield {k: v.to(device) for k, v in b.items()}
            epoch, skip = epoch + 1, 0

    stream = batches()
    t0, tokens, since, window = time.perf_counter(), 0, 0, []
    model.train()
    while step < total:
        optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for micro in range(accum):
            batch = next(stream)
            sync = micro == accum - 1 or world == 1
            ctx_sync = ddp_model.no_sync() if not sync and hasattr(ddp_model, "no_sync") else nullcontext()
            with ctx_sync, (autocast or nullcontext()):
                ref_out = reference(batch) if reference is not None else None
                out = ddp_model(batch, ref_out)
                (out.loss / accum).backward()
            tokens += tokens_in(batch)
            for k, v in out.result.metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) / accum
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        since += 1
        if cfg.run.chaos_kill_at_step and step == cfg.run.chaos_kill_at_step:
            _chaos_kill(cfg, rank)

        evaluate = evaluator is not None and cfg.run.eval_every and (step % cfg.run.eval_every == 0 or step == total)
        save = step == total or (cfg.run.save_every and step % cfg.run.save_every == 0)
        if step % cfg.run.log_every == 0 or save or evaluate or step == total:
            metrics = _mean_over_workers({**sums, "grad_norm": float(grad_norm)}, world)
            elapsed = time.perf_counter() - t0
            tok = torch.tensor([tokens], dtype=torch.float64)
            if world > 1:
                dist.all_reduce(tok)
            metrics.update(step=step, lr=scheduler.get_last_lr()[0], tokens_per_s=float(tok) / max(elapsed, 1e-9))
            window.append(elapsed / since)
            t0, tokens, since = time.perf_counter(), 0, 0
            if evaluate:
                ref_model = reference.model if reference is not None else None
                metrics.update(evaluator(unwrap_model(model.policy), ref_model, tokenizer, step))
            history.append(metrics)
            # report() copies the staged folder into run storage; leaving the staging copy behind
            # would leak one full checkpoint (1.6 GB for SmolLM2 with optimizer state) per save.
            with staging_dir(step) if save and rank == 0 else nullcontext() as staging:
                checkpoint = (
                    _save(staging, cfg, model, tokenizer, optimizer, scheduler, step, rank, world, history)
                    if save else None
                )
                if rank == 0:
                    _progress(step, total, metrics, window)
                ray.train.report(metrics, checkpoint=checkpoint)
    return history if rank == 0 else None


def _save(path, cfg, model, tokenizer, optimizer, scheduler, step, rank, world, history):  # noqa: ANN001, ANN202
    states = [None] * world
    if world > 1:
        dist.all_gather_object(states, rng_state())
    else:
        states = [rng_state()]
    if rank != 0:
        return None
    save_checkpoint(
        Path(path),
        policy=model.policy,
        tokenizer=tokenizer,
        masks=model.masks,
        optimizer=optimizer,
        scheduler=scheduler,
        step=step,
        rng_states=states,
        config=cfg.to_dict(),
        history=history,
    )
    return ray.train.Checkpoint.from_directory(str(path))


def _chaos_kill(cfg: TrainConfig, rank: int) -> None:
    """Fault-tolerance drill: SIGKILL this worker once at ``run.chaos_kill_at_step`` (marker file in storage)."""
    marker = Path(cfg.run.storage_path).expanduser() / f".chaos-{cfg.run.name}-{cfg.run.chaos_kill_at_step}"
    if rank == 0 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        log.warning(f"[sparsepo] chaos: killing worker pid {os.getpid()} at step {cfg.run.chaos_kill_at_step}")
        os.kill(os.getpid(), signal.SIGKILL)


_SHOWN = {"loss": "loss", "rewards/accuracy": "acc", "rewards/margin": "margin", "kl/chosen": "kl_w",
          "mask/reward/chosen/sparsity": "sparsity_u", "eval/reward": "reward", "eval/kl": "eval_kl"}


def _progress(step: int, total: int, m: dict[str, float], window: list[float]) -> None:
    per_step = sum(window[-20:]) / len(window[-20:])
    eta = per_step * (total - step)
    shown = " ".join(f"{short}={m[k]:.4g}" for k, short in _SHOWN.items() if k in m)
    log.info(f"[sparsepo] step {step}/{total} {shown} tok/s={m['tokens_per_s']:.0f} eta={eta:.0f}s")
