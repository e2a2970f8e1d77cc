"""Per-method training-step cost on the same model and batch: step time, tokens/s, peak memory, ratios to DPO.

    sparsepo bench step [--model smollm2] [--batch-size 4] [--max-length 128] [--steps 5] [--methods dpo sparsepo ...]
    sparsepo bench step --lora 16 [--lora-ref copy]   # LoRA; the reference is the policy with adapters off
    sparsepo bench step --fused-head both              # each method with the autograd and the fused LM head
    sparsepo bench step --strategy fsdp --workers 2    # per worker: DDP x2 vs FSDP with 1 and 2 shards (gloo/nccl)
    sparsepo bench step --ragged 64 256 --packing both  # realistic lengths; multi-pair rows off, then on

Each method runs in a fresh subprocess so peak memory (CUDA: max allocated; CPU: peak RSS) is its own.
"first s" is the untimed warm-up step: with the fused head (``run.fused_head``) it includes ``torch.compile``.
"dec pos": positions the decoder runs per step (padded rows, or packed ``rows * T``; ``--ragged`` draws a
fresh batch per step, the same ones for every variant). On CUDA the table adds model FLOP utilisation: (6 N per policy token + 2 N per reference token) / step time
over the card's dense bf16 peak (``--peak-tflops``, default from the device name).

With ``--strategy`` each method runs in ``--workers`` processes (one process group, the same batch on each, the
machine's CPUs split between them) and the figures are per worker, the largest over workers: ``state MiB`` is the
trainable state a worker holds after a step (its parameters, gradients and AdamW moments; FSDP: its shards),
``peak GiB`` as above (it adds the frozen reference, activations and the libraries). ``--strategy fsdp`` measures
DDP with ``--workers`` and FSDP with 1 and ``--workers`` shards (``run.strategy``, :mod:`sparsepo.training.sharding`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

from sparsepo.bench.common import (
    OurStepConfig,
    add_config_flags,
    check_models,
    child_command,
    child_extra,
    config_from_args,
    loss_names,
    preflight,
)
from sparsepo.config.typed import ConfigError, spec

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "A10G": 125.0, "L4": 121.0}


@dataclass(frozen=True)
class StepConfig(OurStepConfig):
    batch_size: int = spec(2, ge=1, help="pairs per step")
    max_length: int = spec(128, ge=4, help="tokens per sequence")
    steps: int = spec(3, ge=1, help="timed steps per variant, after one untimed warm-up step")
    methods: tuple[str, ...] = spec(("dpo", "simpo", "dpop", "tdpo1", "tdpo2", "sparsepo", "mapo"), choices=loss_names,
                                    help="registered methods, each measured in its own process")
    peak_tflops: float | None = spec(None, gt=0, help="the card's dense bf16 peak for MFU (default: from its name)")
    padded: bool = spec(False, help="no shared-prompt packing (the batch is synthetic pairs)")
    ragged: tuple[int, int] | None = spec(None, ge=1, help="LO HI: prompt, chosen and rejected lengths uniform in "
                                          "LO..HI tokens (realistic: 64 256)")
    packing: Literal["one", "multi", "both"] = spec(
        "multi", help="shared-prompt rows: one pair per row, several (run.multi_pair), or each method both ways")
    lora: int = spec(0, ge=0, help="LoRA rank on all linear layers (0: full fine-tuning)")
    lora_ref: Literal["shared", "copy"] = spec(
        "shared", help="LoRA reference: the policy with adapters off (shared) or a second loaded copy")
    fused_head: Literal["auto", "true", "false", "both"] = spec("auto", help="run.fused_head; both: false, then true")
    strategy: Literal["none", "ddp", "fsdp"] = spec(
        "none", help="run.strategy in --workers processes; fsdp: DDP and FSDP with 1 and --workers shards")
    workers: int = spec(1, ge=1, help="processes (GPUs) for --strategy")

    def __post_init__(self) -> None:
        if self.ragged and self.ragged[0] > self.ragged[1]:
            raise ConfigError(f"--ragged: LO {self.ragged[0]} is above HI {self.ragged[1]} (LO HI, e.g. 64 256)")
        if self.workers > 1 and self.strategy == "none":
            raise ConfigError(f"--workers {self.workers} needs --strategy ddp or fsdp (one process without it)")


CONFIG = StepConfig  # this benchmark's settings (read by gpu_check and tests/test_docs.py)


def measure(cfg: StepConfig, method: str) -> dict:
    """One variant's row (``cfg``'s head, packing and layout; ``method``), measured in this process."""
    import torch

    from sparsepo.bench.common import make_step, saved_bytes
    from sparsepo.config.schema import load_config
    from sparsepo.objectives.losses import get_loss
    from sparsepo.objectives.masks import MaskConfig
    from sparsepo.training.forward import AdaptersOff
    from sparsepo.training.hardware import mixed_precision
    from sparsepo.training.models import build_policy, load_causal_lm
    from sparsepo.training.optim import adamw_kernel
    from sparsepo.training.preference_model import PreferenceModel, Reference

    device = torch.device(f"cuda:{rank_of()}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    train_cfg = load_config(None, [f"model.name={cfg.model}", f"lora.r={cfg.lora}"])  # LoRA: all linear layers by default
    policy = build_policy(train_cfg, device, None)
    multi = cfg.packing == "multi"
    ref = None
    if get_loss(method).needs_reference:
        shared = cfg.lora > 0 and cfg.lora_ref == "shared"
        ref_model = AdaptersOff(policy) if shared else load_causal_lm(cfg.model, dtype="float32").to(device)
        ref = Reference(ref_model, method, MaskConfig(), shared_prompt=not cfg.padded, multi_pair=multi)
    fused = {"true": True, "false": False}.get(cfg.fused_head, cfg.fused_head)
    model = PreferenceModel(
        policy, method, chunk_size=cfg.chunk, log_kl=cfg.log_kl, shared_prompt=not cfg.padded, fused_head=fused,
        multi_pair=multi,
    ).to(device).train()
    model = distribute(model, policy, device, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, **adamw_kernel("auto"))
    # Ragged lengths: a fresh batch each step (the same ones for every variant), as packing depends on the draw.
    batches = [{k: v.to(device) for k, v in synthetic_pairs(cfg, policy.config.vocab_size, seed).items()}
               for seed in range(cfg.steps + 1 if cfg.ragged else 1)]
    autocast = mixed_precision(device, bf16=cfg.bf16)  # as the trainer: CUDA, and CPUs with native bf16
    steps = [make_step(model, ref, opt, batch, autocast) for batch in batches]

    first, sec = time_steps(steps, cfg.steps, device)
    largest = max(batches, key=lambda b: int(b["attention_mask"].sum()))
    saved = saved_bytes(model, ref, largest, autocast)  # after timing: "first s" keeps the compile
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)  # real tokens per step
    n_params = sum(p.numel() for p in policy.parameters())
    flops = (6 + (2 if ref is not None else 0)) * n_params * tokens
    # only the non-default variants are marked, so a default run's labels are the method names
    row = {"method": label(cfg, method), "step_s": sec, "first_s": first, "tokens_per_s": tokens / sec, "device": str(device),
           "state_mib": state_bytes(model, opt) / 2**20, "saved_mib": saved / 2**20,
           "decoder_tokens": decoder_tokens(batches, policy, cfg.padded, multi)}
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        name = torch.cuda.get_device_name()
        peak = cfg.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        row["device"] = name
        row["mfu"] = flops / sec / (peak * 1e12) if peak else float("nan")
    else:
        row["peak_mem_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def label(cfg: StepConfig, method: str) -> str:
    """A variant's row label: only the non-default variants are marked, so a default run's are the method names."""
    return method + ("+1row" if cfg.packing == "one" else "") + ("+fused" if cfg.fused_head == "true" else "")


def time_steps(steps: list[Any], n: int, device: Any) -> tuple[float, float]:
    """(the untimed warm-up step's seconds, the median of ``n`` timed steps), cycling through ``steps[1:]`` (or
    repeating ``steps[0]``); on CUDA each step is synchronised and peak memory is counted from after the warm-up."""
    import torch

    t = time.perf_counter()
    steps[0]()  # warm-up (allocator, kernels; torch.compile of the fused head)
    first = time.perf_counter() - t
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for k in range(n):
        t = time.perf_counter()
        steps[(k + 1) % len(steps)]()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return first, sorted(times)[len(times) // 2]


def measure_workers(cfg: StepConfig, method: str) -> dict:
    """:func:`measure` in ``cfg.workers`` spawned processes forming one process group; the slowest / largest
    worker's figures (the sum of their tokens/s)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker, args=(r, cfg, method, port, queue)) for r in range(cfg.workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    if any(proc.exitcode != 0 for proc in procs):
        sys.exit(f"a worker failed: exit codes {[proc.exitcode for proc in procs]}")
    rows = [queue.get() for _ in procs]
    row = {**rows[0], **{k: max(r[k] for r in rows) for k in ("step_s", "first_s", "peak_mem_gib", "state_mib", "saved_mib")}}
    row["tokens_per_s"] = sum(r["tokens_per_s"] for r in rows)
    row["method"] = f"{label(cfg, method)} {cfg.strategy}x{cfg.workers}"
    return row


def _worker(rank: int, cfg: StepConfig, method: str, port: int, queue: Any) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank)
    else:  # the machine's CPUs split between the workers, as Ray Train grants them
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // cfg.workers))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=cfg.workers)
    try:
        queue.put(measure(cfg, method))
    finally:
        dist.destroy_process_group()


def rank_of() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def distribute(model: Any, policy: Any, device: Any, cfg: StepConfig) -> Any:
    """``model`` as the trainer runs it under ``cfg.strategy``: DDP-wrapped or FSDP-sharded (or as is)."""
    import torch

    if cfg.strategy == "fsdp":
        from sparsepo.training.sharding import shard_model

        return shard_model(model, policy, device, bf16=cfg.bf16)
    if cfg.strategy == "ddp" and cfg.workers > 1:
        return torch.nn.parallel.DistributedDataParallel(model)
    return model


def state_bytes(model: Any, opt: Any) -> int:
    """Bytes of this worker's trainable parameters, their gradients and the optimizer state (local shards)."""
    import torch
    from torch.distributed.tensor import DTensor

    def size(t: torch.Tensor) -> int:
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()

    params = [p for p in model.parameters() if p.requires_grad]
    moments = [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
    return sum(size(p) + (size(p.grad) if p.grad is not None else 0) for p in params) + sum(size(v) for v in moments)


def decoder_tokens(batches: list[dict], policy: object, padded: bool, multi_pair: bool) -> float:
    """Mean positions per step the decoder runs: every padded position, or ``rows * T`` packed for ``policy``."""
    from sparsepo.training.forward import pair_packing

    counts = [b["input_ids"].numel() if padded else pair_packing(policy, b, multi_pair).input_ids.numel() for b in batches]
    return sum(counts) / len(counts)


def synthetic_pairs(cfg: StepConfig, vocab: int, seed: int = 0) -> dict:
    """A collated batch of ``2 * batch_size`` rows: random tokens, each pair sharing its prompt. Without
    ``--ragged``, every row is ``max_length`` tokens with a quarter of prompt; with ``--ragged LO HI``, prompt,
    chosen and rejected each have a uniform ``LO..HI`` tokens (the ``realistic`` workload), cut to ``max_length``."""
    import torch

    from sparsepo.data.preference import PreferenceCollator

    g = torch.Generator().manual_seed(seed)
    n, cut = cfg.batch_size, cfg.max_length
    if cfg.ragged:
        lo, hi = cfg.ragged
        lens = torch.randint(lo, hi + 1, (n, 3), generator=g).tolist()
    else:
        p = cut // 4
        lens = [[p, cut - p, cut - p]] * n
    examples = []
    for p, c, r in lens:
        p = min(p, cut - 1)  # at least one response token survives the cut
        prompt, chosen, rejected = (torch.randint(1, vocab, (k,), generator=g).tolist() for k in (p, c, r))
        examples.append({"prompt_ids": prompt, "chosen_ids": chosen[: cut - p], "rejected_ids": rejected[: cut - p]})
    return PreferenceCollator(pad_token_id=0)(examples)


def print_ratios(rows: list[dict], suffix: str, title: str) -> None:
    """Per method measured both ways (label with and without ``suffix``): the with / without ratios of step
    time, first-step time and peak memory."""
    by = {r["method"]: r for r in rows}
    pairs = [(by[m[: -len(suffix)]], r) for m, r in by.items() if m.endswith(suffix) and m[: -len(suffix)] in by]
    if pairs:
        print(f"\n{title:15s} {'step':>8s} {'first':>8s} {'peak':>8s}")
    for base, other in pairs:
        print(f"{base['method']:15s} {other['step_s'] / base['step_s']:8.2f} {other['first_s'] / base['first_s']:8.2f} "
              f"{other['peak_mem_gib'] / base['peak_mem_gib']:8.2f}")


def print_sharding(rows: list[dict]) -> None:
    """Per worker, each layout against the DDP one of the same method: trainable state and peak memory."""
    ddp = {r["method"].split(" ")[0]: r for r in rows if r["method"].endswith(tuple(f" ddpx{n}" for n in range(1, 999)))}
    shown = [(ddp[r["method"].split(" ")[0]], r) for r in rows if " " in r["method"] and r["method"].split(" ")[0] in ddp]
    if shown:
        print(f"\nper worker{'':15s} {'state MiB':>10s} {'peak GiB':>9s} {'state/DDP':>10s} {'peak/DDP':>9s}")
    for base, r in shown:
        print(f"{r['method']:25s} {r['state_mib']:10.1f} {r['peak_mem_gib']:9.2f} {r['state_mib'] / base['state_mib']:10.2f} "
              f"{r['peak_mem_gib'] / base['peak_mem_gib']:9.2f}")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo bench step")
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    return add_config_flags(ap, StepConfig)


def variants(cfg: StepConfig) -> list[tuple[str, StepConfig]]:
    """``(method, settings)`` of every method x head x packing x layout variant, in the order they run."""
    heads = ["false", "true"] if cfg.fused_head == "both" else [cfg.fused_head]
    packings = ["one", "multi"] if cfg.packing == "both" else [cfg.packing]
    layouts = [(cfg.strategy, cfg.workers)]
    if cfg.strategy == "fsdp":
        layouts = [("ddp", cfg.workers)] + [("fsdp", n) for n in sorted({1, cfg.workers})]
    return [(m, replace(cfg, fused_head=f, packing=p, strategy=s, workers=n))
            for m in cfg.methods for f in heads for p in packings for s, n in layouts]


def run_variants(cfg: StepConfig) -> list[dict]:
    """Each variant measured in its own subprocess; the rows that succeeded."""
    rows = []
    for method, one in variants(cfg):
        cmd = child_command("sparsepo.bench.step", one, method=method)
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode != 0:
            print(f"{method}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"measured {rows[-1]['method']}: {rows[-1]['step_s']:.3f} s/step, {rows[-1]['decoder_tokens']:.0f} "
              "decoder positions/step", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict], cfg: StepConfig) -> None:
    """One line per variant, with its ratios to DPO's (the first DPO row), then the with / without ratios."""
    base = next((r for r in rows if r["method"].split("+")[0] == "dpo"), rows[0])
    lora = f"  LoRA r={cfg.lora} (reference: {cfg.lora_ref})" if cfg.lora else ""
    ragged = f" (lengths {cfg.ragged[0]}-{cfg.ragged[1]})" if cfg.ragged else ""
    print(f"device: {rows[0]['device']}  model: {cfg.model}  pairs/step: {cfg.batch_size}  "
          f"tokens/seq: {cfg.max_length}{ragged}{lora}")
    head = (f"{'method':15s} {'step s':>8s} {'first s':>8s} {'tok/s':>9s} {'peak GiB':>9s} {'time/DPO':>9s} "
            f"{'tok/s/DPO':>10s} {'mem/DPO':>8s} {'saved MiB':>10s} {'saved/DPO':>10s} {'dec pos':>8s}")
    has_mfu = "mfu" in rows[0]
    print(head + (f" {'MFU':>6s}" if has_mfu else ""))
    for r in rows:
        line = (
            f"{r['method']:15s} {r['step_s']:8.3f} {r['first_s']:8.2f} {r['tokens_per_s']:9.0f} {r['peak_mem_gib']:9.2f} "
            f"{r['step_s'] / base['step_s']:9.2f} {r['tokens_per_s'] / base['tokens_per_s']:10.2f} "
            f"{r['peak_mem_gib'] / base['peak_mem_gib']:8.2f} {r['saved_mib']:10.1f} "
            f"{r['saved_mib'] / base['saved_mib']:10.2f} {r['decoder_tokens']:8.0f}"
        )
        print(line + (f" {r['mfu']:6.1%}" if has_mfu else ""))
    print_ratios(rows, "+fused", "fused/eager")
    print_ratios(rows, "+1row", "1row/multi")
    print_sharding(rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(StepConfig, args)
    if args.child:  # one variant, its row as JSON
        method = child_extra(args)["method"]
        print(json.dumps(measure_workers(cfg, method) if cfg.strategy != "none" else measure(cfg, method)))
        return 0
    if preflight("step", args, check_models("step", cfg.model, methods=cfg.methods)):
        return 0
    rows = run_variants(cfg)
    if not rows:
        sys.exit("no method could be measured")
    print_table(rows, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
