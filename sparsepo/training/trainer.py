"""The Ray Train loop: ``train_loop_per_worker`` for ``TorchTrainer`` (CPU/gloo or GPU/nccl; DDP or, with
``run.strategy=fsdp``, a sharded policy: ``sparsepo.training.sharding``).

Each worker loads the policy and a frozen reference, builds the objective's mask networks, and trains with
AdamW (policy and mask-network parameter groups), a cosine schedule with warm-up, gradient accumulation and
clipping. Every ``log_every`` steps it reports the METHODS.md metrics (averaged over workers) and tokens/s;
every ``save_every`` steps and at the end rank 0 writes a checkpoint (see ``sparsepo.training.checkpoint``). A restarted
worker group resumes from ``ray.train.get_checkpoint()`` at the exact step, data position and RNG state. With
``run.num_workers=0`` (Ray Train's local mode) the loop runs in the calling process, which persists and resumes its
checkpoints itself (``sparsepo.training.local_mode``).
"""

from __future__ import annotations

import importlib
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from sparsepo.config.schema import TrainConfig, from_dict
from sparsepo.data.preference import PreferenceCollator, load_preference_data
from sparsepo.logs import quiet_worker, startup_mark
from sparsepo.objectives.losses import get_loss
from sparsepo.objectives.masks import model_dims
from sparsepo.training import sft
from sparsepo.training.checkpoint import (
    ADAPTER_DIR,
    MASKS_FILE,
    POLICY_DIR,
    chaos_kill,
    load_history,
    load_train_state,
    policy_folder,
    remove_stale_staging,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    staging_dir,
)
from sparsepo.training.forward import AdaptersOff, unwrap_model
from sparsepo.training.hardware import mixed_precision, use_granted_cpus
from sparsepo.training.local_mode import LocalRun, report, start_local_run
from sparsepo.training.models import build_policy, load_causal_lm, load_tokenizer
from sparsepo.training.optim import build_optimizer, cosine_schedule
from sparsepo.training.preference_model import PreferenceModel, Reference
from sparsepo.training.progress import mean_over_workers, progress_line, sum_over_workers, to_host
from sparsepo.training.sharding import (
    enable_activation_checkpointing,
    full_state_dict,
    is_sharded,
    load_sharded,
    local,
    save_sharded,
    shard_model,
    sub_state,
)

# Ray Train V2 patches print() in workers to log *and* echo, so a printed line reaches the driver twice;
# a logger line reaches it once (and Train's per-worker log file).
log = logging.getLogger("sparsepo.training.trainer")
startup_mark("trainer module imported")


def load_evaluator(spec: str | None, args: dict[str, Any]) -> Any:
    """``"module:factory"`` -> ``factory(**args)``: a callable ``(policy, ref | None, tokenizer, step) -> metrics``
    run on rank 0 (see ``sparsepo.evaluation.sentiment.SentimentEvaluator``)."""
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)(**args)


@dataclass
class Worker:
    """Everything one Train worker holds while it trains (built by the ``_setup_*`` steps)."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    tokenizer: Any
    model: PreferenceModel
    reference: Reference | None
    history: list[dict[str, float]]
    state: dict[str, Any] | None = None
    loader: DataLoader | None = None
    sampler: DistributedSampler | None = None
    total: int = 0
    step: int = 0
    ddp_model: Any = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    evaluator: Any = None
    masks_restored: bool = False
    resume: Any = None  # the ray.train.Checkpoint resumed from (its sharded state is read after sharding)
    local_run: LocalRun | None = None  # run.num_workers=0: this process persists its checkpoints (local_mode)


def train_loop_per_worker(config: dict[str, Any]) -> list[dict[str, float]] | None:
    """Ray Train entry: ``config`` is ``TrainConfig.to_dict()``.

    Returns, on rank 0, every reported metrics dict of the run (carried across restarts in the checkpoints),
    which Ray exposes as ``Result.return_value``.
    """
    startup_mark("worker: loop entered")
    cfg = from_dict(config)
    local_run = start_local_run(cfg)  # None with workers: Ray Train's controller persists and restores
    if local_run is None:
        use_granted_cpus()  # torch threads = the CPUs Ray granted this worker
    quiet_worker()
    w = _setup_models(cfg, local_run)
    startup_mark("worker: models built")
    _setup_data(w)
    startup_mark("worker: data loaded")
    _setup_masks(w)
    _setup_optimizer(w)
    startup_mark("worker: masks + optimizer ready")
    _train(w)
    return w.history if w.rank == 0 else None


def _setup_models(cfg: TrainConfig, local_run: LocalRun | None) -> Worker:
    """Tokenizer, policy (+ masks) and reference, from the run's latest checkpoint if Ray restarted us (or, in
    local mode, if the run has one in storage)."""
    ctx = local_run.context() if local_run is not None else ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = local_run.device if local_run is not None else ray.train.torch.get_device()
    seed_everything(cfg.run.seed)  # same seed on every rank: mask networks start identical
    remove_stale_staging()  # checkpoints staged by killed workers on this node

    ckpt = local_run.latest() if local_run is not None else ray.train.get_checkpoint()
    if ckpt is None and cfg.run.resume_from:
        ckpt = ray.train.Checkpoint.from_directory(cfg.run.resume_from)
    with ckpt.as_directory() if ckpt is not None else tempfile.TemporaryDirectory() as d:
        resume_dir = Path(d) if ckpt is not None else None
        tokenizer = load_tokenizer(str(resume_dir / POLICY_DIR) if resume_dir else cfg.model.name)
        if resume_dir is not None:
            policy = build_policy(cfg, device, resume_dir / POLICY_DIR, resume_dir / ADAPTER_DIR)
        else:
            policy = build_policy(cfg, device)
        if cfg.run.activation_checkpointing:
            enable_activation_checkpointing(policy)
        reference = _build_reference(cfg, policy, device)
        dims = model_dims(reference.model) if reference is not None else None
        seq = sft.is_sequence_objective(cfg.method)  # SFT stage: single sequences, no reference
        model = (sft.SFTModel(policy, cfg.run.chunk_size) if seq else PreferenceModel(
            policy, cfg.method, cfg.loss_hparams(), cfg.mask, dims, cfg.run.chunk_size, cfg.run.log_kl,
            shared_prompt=cfg.run.shared_prompt, fused_head=cfg.run.fused_head,
            multi_pair=cfg.run.multi_pair,
        )).to(device)
        w = Worker(cfg, rank, world, device, tokenizer, model, reference, history=[], resume=ckpt, local_run=local_run)
        if resume_dir is not None:
            if model.masks is not None and (resume_dir / MASKS_FILE).exists():
                model.masks.load_state_dict(torch.load(resume_dir / MASKS_FILE, map_location=device))
                w.masks_restored = True
            if (resume_dir / "train_state.pt").exists():
                w.state = load_train_state(resume_dir)
            w.history = load_history(resume_dir)
    return w


def _build_reference(cfg: TrainConfig, policy: torch.nn.Module, device: torch.device) -> Reference | None:
    if not get_loss(cfg.method).needs_reference:
        return None
    spec_ref = cfg.model.ref or cfg.model.name
    if cfg.lora.r > 0 and spec_ref == cfg.model.name:  # the policy's own frozen base: no second copy
        ref_model = AdaptersOff(policy)
    else:
        ref_model = load_causal_lm(spec_ref, dtype=cfg.model.dtype, gguf_file=cfg.model.gguf_file).to(device)
    oracle = None
    if get_loss(cfg.method).needs_oracle:  # a trained folder: never the GGUF file of the base model
        oracle = load_causal_lm(policy_folder(cfg.model.oracle), dtype=cfg.model.dtype).to(device)
    return Reference(ref_model, cfg.method, cfg.mask, shared_prompt=cfg.run.shared_prompt, oracle=oracle,
                     multi_pair=cfg.run.multi_pair)


def _setup_data(w: Worker) -> None:
    """This rank's shard of the pairs, and the run length in optimizer steps."""
    cfg = w.cfg
    seq = sft.is_sequence_objective(cfg.method)  # SFT stage: single sequences
    dataset, report = (sft.load_sft_data if seq else load_preference_data)(cfg.data, w.tokenizer)
    if w.rank == 0:
        log.info(f"[sparsepo] {report}")
    w.sampler = DistributedSampler(
        dataset, num_replicas=w.world, rank=w.rank, shuffle=True, seed=cfg.run.seed, drop_last=True
    )
    w.loader = DataLoader(
        dataset,
        batch_size=cfg.optim.batch_size,
        sampler=w.sampler,
        collate_fn=(sft.SFTCollator if seq else PreferenceCollator)(w.tokenizer.pad_token_id),
        drop_last=True,
        # Its own generator: creating an iterator must not draw from the global RNG that resumes exactly.
        generator=torch.Generator().manual_seed(cfg.run.seed),
    )
    if len(w.loader) == 0:
        raise ValueError(
            f"{len(dataset)} pairs are too few for batch_size={cfg.optim.batch_size} x {w.world} workers; "
            "lower optim.batch_size"
        )
    w.total = cfg.optim.max_steps or max(1, math.floor(cfg.optim.epochs * len(w.loader) / cfg.optim.grad_accum))


CALIBRATION_PAIRS = 32  # pairs whose response tokens set the centred start of the masks


def _setup_masks(w: Worker) -> None:
    """A fresh run's learned masks start centred (``mask.init=centred``), calibrated on the first
    ``CALIBRATION_PAIRS`` pairs of the run's global order (the same for any number of workers, so every rank
    computes the same start), read without drawing from any RNG."""
    if w.masks_restored or w.reference is None or getattr(w.model, "masks", None) is None:
        return
    dataset, size = w.loader.dataset, w.cfg.optim.batch_size
    order = list(DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=w.cfg.run.seed))
    order = order[:CALIBRATION_PAIRS]
    batches = [
        {k: v.to(w.device) for k, v in w.loader.collate_fn([dataset[i] for i in order[j : j + size]]).items()}
        for j in range(0, len(order), size)
    ]
    with mixed_precision(w.device, w.cfg.optim.bf16) or nullcontext():
        n = w.model.calibrate_masks(batches, [w.reference(b) for b in batches])
    if n and w.rank == 0:
        log.info(f"[sparsepo] masks calibrated on {n} response tokens of {len(order)} pairs "
                 f"(mask.init_sparsity={w.cfg.mask.init_sparsity})")


def _setup_optimizer(w: Worker) -> None:
    """DDP wrapper or FSDP sharding, AdamW + cosine schedule, restored step/RNG when resuming, and rank 0's
    evaluator."""
    cfg = w.cfg
    fsdp = cfg.run.strategy == "fsdp"
    if fsdp:  # FSDP2 swaps parameters for DTensor shards in place: the optimizer is built on those
        w.ddp_model = shard_model(w.model, w.model.policy, w.device, cfg.optim.bf16)
    else:
        w.ddp_model = ray.train.torch.prepare_model(w.model) if w.world > 1 else w.model
    w.optimizer = build_optimizer(cfg, w.model)
    w.scheduler = cosine_schedule(w.optimizer, math.ceil(cfg.optim.warmup_ratio * w.total), w.total)
    if w.state is not None:
        if fsdp:
            with w.resume.as_directory() as d:
                load_sharded(Path(d), w.model, w.optimizer)
        else:
            w.optimizer.load_state_dict(w.state["optimizer"])
        w.scheduler.load_state_dict(w.state["scheduler"])
        w.step = w.state["step"]
        set_rng_state(w.state["rng"][w.rank % len(w.state["rng"])])
    w.evaluator = load_evaluator(cfg.run.evaluator, cfg.run.evaluator_args) if w.rank == 0 else None


def _batches(w: Worker) -> Iterator[dict[str, torch.Tensor]]:
    """Micro-batches on the device, forever, starting exactly after the ones already consumed."""
    epoch, skip = divmod(w.step * w.cfg.optim.grad_accum, len(w.loader))
    while True:
        w.sampler.set_epoch(epoch)
        for i, b in enumerate(w.loader):
            if i >= skip:
                yield {k: v.to(w.device) for k, v in b.items()}
        epoch, skip = epoch + 1, 0


def _train_step(
    w: Worker, stream: Iterator[dict[str, torch.Tensor]], autocast: Any
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """One optimizer step over ``grad_accum`` micro-batches: (mean metrics, grad norm, tokens processed), as
    device scalars: no host sync per micro-batch (:func:`sparsepo.training.progress.to_host` makes one per logged step)."""
    accum = w.cfg.optim.grad_accum
    w.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, torch.Tensor] = {}
    tokens = torch.zeros((), dtype=torch.int64, device=w.device)
    for micro in range(accum):
        batch = next(stream)
        sync = micro == accum - 1 or w.world == 1
        ctx_sync = w.ddp_model.no_sync() if not sync and hasattr(w.ddp_model, "no_sync") else nullcontext()
        with ctx_sync, (autocast or nullcontext()):
            ref_out = w.reference(batch) if w.reference is not None else None
            out = w.ddp_model(batch, ref_out)
            del ref_out  # backward needs none of it: every layer's states (learned masks) would outlive the forward
            (out.loss / accum).backward()
        tokens += batch["attention_mask"].sum()
        for k, v in out.result.metrics.items():
            # fp64, in the order Python floats were summed before: the logged values are unchanged
            v = v.detach().double() / accum
            sums[k] = sums[k] + v if k in sums else v
    if getattr(w.model, "masks", None) is not None:  # METHODS.md diagnostics: how hard each part is pushed
        sums["grad_norm/masks"] = _grad_norm(w.model.masks.parameters()).double()
    grad_norm = local(torch.nn.utils.clip_grad_norm_(w.model.parameters(), w.cfg.optim.max_grad_norm))
    if "grad_norm/masks" in sums:
        sums["grad_norm/policy"] = (grad_norm.double() ** 2 - sums["grad_norm/masks"] ** 2).clamp_min(0).sqrt()
    w.optimizer.step()
    w.scheduler.step()
    w.step += 1
    return sums, grad_norm.detach(), tokens


def _grad_norm(params: Iterator[torch.nn.Parameter]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    # get_total_norm: the foreach norms' norm, also of DTensor shards (FSDP), whose total local() gathers
    return local(torch.nn.utils.get_total_norm(grads)) if grads else torch.zeros(())


def _train(w: Worker) -> None:
    """The loop: step, and at logging / evaluation / checkpoint steps report to Ray (with a checkpoint)."""
    cfg = w.cfg
    autocast = mixed_precision(w.device, cfg.optim.bf16)
    stream = _batches(w)
    t0, tokens, since, window = time.perf_counter(), torch.zeros((), dtype=torch.int64, device=w.device), 0, []
    w.model.train()
    while w.step < w.total:
        sums, grad_norm, n = _train_step(w, stream, autocast)
        if w.step == 1:
            startup_mark("worker: first optimizer step done")
        tokens = tokens + n
        since += 1
        if cfg.run.chaos_kill_at_step and w.step == cfg.run.chaos_kill_at_step:
            chaos_kill(cfg, w.rank)
        step, last = w.step, w.step == w.total
        evaluate = w.evaluator is not None and cfg.run.eval_every and (step % cfg.run.eval_every == 0 or last)
        save = last or (cfg.run.save_every and step % cfg.run.save_every == 0)
        if not (step % cfg.run.log_every == 0 or save or evaluate):
            continue
        host = to_host({**sums, "grad_norm": grad_norm, "tokens": tokens})
        n_tokens = host.pop("tokens")
        metrics = mean_over_workers(host, w.world)
        elapsed = time.perf_counter() - t0
        metrics.update(step=step, lr=w.scheduler.get_last_lr()[0], tokens_per_s=sum_over_workers(n_tokens, w.world) / max(elapsed, 1e-9))
        window.append(elapsed / since)
        t0, tokens, since = time.perf_counter(), torch.zeros_like(tokens), 0
        if evaluate:
            ref_model = w.reference.model if w.reference is not None else None
            metrics.update(w.evaluator(unwrap_model(w.model.policy), ref_model, w.tokenizer, step))
        w.history.append(metrics)
        _report(w, metrics, save, window)


def _report(w: Worker, metrics: dict[str, float], save: bool, window: list[float]) -> None:
    # report() copies the staged folder into run storage; leaving the staging copy behind
    # would leak one full checkpoint (1.6 GB for SmolLM2 with optimizer state) per save.
    # Sharded: every rank writes (and reports) its own shard; Ray merges the folders into one checkpoint.
    staged = save and (w.rank == 0 or is_sharded(w.model))
    with staging_dir(w.step) if staged else nullcontext() as staging:
        checkpoint = _save(Path(staging) if staged else None, w) if save else None
        if w.rank == 0:
            progress_line(w.step, w.total, metrics, window)
        report(w.local_run, metrics, checkpoint)


def _save(path: Path | None, w: Worker) -> ray.train.Checkpoint | None:
    """Write this rank's part of a checkpoint into ``path`` (a collective): rank 0 everything but the shards
    (under FSDP, the policy and masks from the gathered weights), every rank its shards under FSDP (unsharded,
    ranks > 0 write nothing: ``path`` None)."""
    states = [None] * w.world
    if w.world > 1:
        dist.all_gather_object(states, rng_state())
    else:
        states = [rng_state()]
    sharded = is_sharded(w.model)
    full = full_state_dict(w.model) if sharded else {}  # collective; filled on rank 0 only
    if sharded:
        save_sharded(path, w.model, w.optimizer)
    if w.rank != 0:
        return ray.train.Checkpoint.from_directory(str(path)) if sharded else None
    save_checkpoint(
        path,
        policy=w.model.policy,
        tokenizer=w.tokenizer,
        masks=w.model.masks,
        optimizer=None if sharded else w.optimizer,  # sharded: in sharded/ with the model
        scheduler=w.scheduler,
        step=w.step,
        rng_states=states,
        config=w.cfg.to_dict(),
        history=w.history,
        policy_state=sub_state(full, "policy") if sharded else None,
        masks_state=sub_state(full, "masks") if sharded else None,
    )
    return ray.train.Checkpoint.from_directory(str(path))
