"""Per-method training-step cost on the same model and batch: step time, tokens/s, peak memory, ratios to DPO.

    sparsepo bench step [--model smollm2] [--batch-size 4] [--max-length 128] [--steps 5] [--methods dpo,sparsepo,...]
    sparsepo bench step --lora 16 [--lora-ref copy]   # LoRA; the reference is the policy with adapters off
    sparsepo bench step --fused-head both              # each method with the autograd and the fused LM head
    sparsepo bench step --strategy fsdp --workers 2    # per worker: DDP x2 vs FSDP with 1 and 2 shards (gloo/nccl)
    sparsepo bench step --ragged 64,256 --packing both  # realistic lengths; multi-pair rows off, then on

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
from typing import Any

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "A10G": 125.0, "L4": 121.0}


def measure(args: argparse.Namespace) -> dict:
    import torch

    from sparsepo.bench.common import make_step
    from sparsepo.config.schema import load_config
    from sparsepo.objectives.losses import get_loss
    from sparsepo.objectives.masks import MaskConfig
    from sparsepo.training.forward import AdaptersOff
    from sparsepo.training.hardware import mixed_precision
    from sparsepo.training.models import build_policy, load_causal_lm
    from sparsepo.training.preference_model import PreferenceModel, Reference
    from sparsepo.training.trainer import adamw_kernel

    device = torch.device(f"cuda:{rank_of()}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cfg = load_config(None, [f"model.name={args.model}", f"lora.r={args.lora}"])  # LoRA: all linear layers by default
    policy = build_policy(cfg, device, None)
    spec = get_loss(args.method)
    multi = args.packing == "multi"
    ref = None
    if spec.needs_reference:
        shared = args.lora > 0 and args.lora_ref == "shared"
        ref_model = AdaptersOff(policy) if shared else load_causal_lm(args.model, dtype="float32").to(device)
        ref = Reference(ref_model, args.method, MaskConfig(), shared_prompt=not args.padded, multi_pair=multi)
    fused = {"true": True, "false": False}.get(args.fused_head, args.fused_head)
    model = PreferenceModel(
        policy, args.method, chunk_size=args.chunk, log_kl=args.log_kl, shared_prompt=not args.padded, fused_head=fused,
        multi_pair=multi,
    ).to(device).train()
    model = distribute(model, policy, device, args)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, **adamw_kernel("auto"))
    # Ragged lengths: a fresh batch each step (the same ones for every variant), as packing depends on the draw.
    batches = [{k: v.to(device) for k, v in synthetic_pairs(args, policy.config.vocab_size, seed).items()}
               for seed in range(args.steps + 1 if args.ragged else 1)]
    autocast = mixed_precision(device, bf16=not args.no_bf16)  # as the trainer: CUDA, and CPUs with native bf16
    steps = [make_step(model, ref, opt, batch, autocast) for batch in batches]

    first, sec = time_steps(steps, args.steps, device)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)  # real tokens per step
    n_params = sum(p.numel() for p in policy.parameters())
    flops = (6 + (2 if ref is not None else 0)) * n_params * tokens
    # only the non-default variants are marked, so a default run's labels are the method names
    label = args.method + ("+1row" if args.packing == "one" else "") + ("+fused" if args.fused_head == "true" else "")
    row = {"method": label, "step_s": sec, "first_s": first, "tokens_per_s": tokens / sec, "device": str(device),
           "state_mib": state_bytes(model, opt) / 2**20,
           "decoder_tokens": decoder_tokens(batches, policy, args.padded, multi)}
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        row["device"] = name
        row["mfu"] = flops / sec / (peak * 1e12) if peak else float("nan")
    else:
        row["peak_mem_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


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


def measure_workers(args: argparse.Namespace) -> dict:
    """:func:`measure` in ``args.workers`` spawned processes forming one process group; the slowest / largest
    worker's figures (the sum of their tokens/s)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker, args=(r, args, port, queue)) for r in range(args.workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    if any(proc.exitcode != 0 for proc in procs):
        sys.exit(f"a worker failed: exit codes {[proc.exitcode for proc in procs]}")
    rows = [queue.get() for _ in procs]
    row = {**rows[0], **{k: max(r[k] for r in rows) for k in ("step_s", "first_s", "peak_mem_gib", "state_mib")}}
    row["tokens_per_s"] = sum(r["tokens_per_s"] for r in rows)
    row["method"] = (f"{args.method}{'+1row' if args.packing == 'one' else ''}{'+fused' if args.fused_head == 'true' else ''}"
                     f" {args.strategy}x{args.workers}")
    return row


def _worker(rank: int, args: argparse.Namespace, port: int, queue: Any) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank)
    else:  # the machine's CPUs split between the workers, as Ray Train grants them
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // args.workers))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=args.workers)
    try:
        queue.put(measure(args))
    finally:
        dist.destroy_process_group()


def rank_of() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def distribute(model: Any, policy: Any, device: Any, args: argparse.Namespace) -> Any:
    """``model`` as the trainer runs it under ``args.strategy``: DDP-wrapped or FSDP-sharded (or as is)."""
    import torch

    if args.strategy == "fsdp":
        from sparsepo.training.sharding import shard_model

        return shard_model(model, policy, device, bf16=not args.no_bf16)
    if args.strategy == "ddp" and args.workers > 1:
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


def synthetic_pairs(args: argparse.Namespace, vocab: int, seed: int = 0) -> dict:
    """A collated batch of ``2 * batch_size`` rows: random tokens, each pair sharing its prompt. Without
    ``--ragged``, every row is ``max_length`` tokens with a quarter of prompt; with ``--ragged LO,HI``, prompt,
    chosen and rejected each have a uniform ``LO..HI`` tokens (the ``realistic`` workload), cut to ``max_length``."""
    import torch

    from sparsepo.data.preference import PreferenceCollator

    g = torch.Generator().manual_seed(seed)
    n = args.batch_size
    if args.ragged:
        lo, hi = (int(x) for x in args.ragged.split(","))
        lens = torch.randint(lo, hi + 1, (n, 3), generator=g).tolist()
    else:
        p = args.max_length // 4
        lens = [[p, args.max_length - p, args.max_length - p]] * n
    examples = []
    for p, c, r in lens:
        p = min(p, args.max_length - 1)  # at least one response token survives the cut
        prompt, chosen, rejected = (torch.randint(1, vocab, (k,), generator=g).tolist() for k in (p, c, r))
        examples.append({"prompt_ids": prompt, "chosen_ids": chosen[: args.max_length - p],
                         "rejected_ids": rejected[: args.max_length - p]})
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batch-size", type=int, default=2, help="pairs per step")
    ap.add_argument("--max-length", type=int, default=128, help="tokens per sequence")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--methods", default="dpo,simpo,dpop,tdpo1,tdpo2,sparsepo,mapo")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--no-bf16", action="store_true", help="no bf16 autocast (optim.bf16=false)")
    ap.add_argument("--log-kl", action="store_true", help="token KL for methods that only log it (run.log_kl)")
    ap.add_argument("--padded", action="store_true", help="no shared-prompt packing (the batch is synthetic pairs)")
    ap.add_argument("--ragged", default=None, metavar="LO,HI",
                    help="prompt, chosen and rejected lengths uniform in LO..HI tokens (realistic: 64,256)")
    ap.add_argument("--packing", choices=["one", "multi", "both"], default="multi",
                    help="shared-prompt rows: one pair per row, several (run.multi_pair), or each method both ways")
    ap.add_argument("--lora", type=int, default=0, help="LoRA rank on all linear layers (0: full fine-tuning)")
    ap.add_argument("--lora-ref", choices=["shared", "copy"], default="shared",
                    help="LoRA reference: the policy with adapters off (shared) or a second loaded copy")
    ap.add_argument("--fused-head", choices=["auto", "true", "false", "both"], default="auto",
                    help="run.fused_head; both: each method with false, then true")
    ap.add_argument("--strategy", choices=["none", "ddp", "fsdp"], default="none",
                    help="run.strategy in --workers processes; fsdp: DDP and FSDP with 1 and --workers shards")
    ap.add_argument("--workers", type=int, default=1, help="processes (GPUs) for --strategy")
    ap.add_argument("--method", help=argparse.SUPPRESS)  # child mode
    return ap


def run_variants(args: argparse.Namespace) -> list[dict]:
    """Each method x head x packing x layout variant measured in its own subprocess; the rows that succeeded."""
    rows = []
    heads = ["false", "true"] if args.fused_head == "both" else [args.fused_head]
    packings = ["one", "multi"] if args.packing == "both" else [args.packing]
    layouts = [(args.strategy, args.workers)]
    if args.strategy == "fsdp":
        layouts = [("ddp", args.workers)] + [("fsdp", n) for n in sorted({1, args.workers})]
    variants = ((m, f, p, s) for m in args.methods.split(",") for f in heads for p in packings for s in layouts)
    for m, fused, packing, (strategy, n) in variants:
        cmd = [sys.executable, "-m", "sparsepo.bench.step", "--method", m, f"--fused-head={fused}",
               f"--packing={packing}", f"--strategy={strategy}", f"--workers={n}"] + [
            f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}")
            for k, v in vars(args).items()
            if k not in ("method", "methods", "fused_head", "packing", "strategy", "workers")
            and v is not None and v is not False
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode != 0:
            print(f"{m}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"measured {rows[-1]['method']}: {rows[-1]['step_s']:.3f} s/step, {rows[-1]['decoder_tokens']:.0f} "
              "decoder positions/step", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    """One line per variant, with its ratios to DPO's (the first DPO row), then the with / without ratios."""
    base = next((r for r in rows if r["method"].split("+")[0] == "dpo"), rows[0])
    lora = f"  LoRA r={args.lora} (reference: {args.lora_ref})" if args.lora else ""
    ragged = f" (lengths {args.ragged})" if args.ragged else ""
    print(f"device: {rows[0]['device']}  model: {args.model}  pairs/step: {args.batch_size}  "
          f"tokens/seq: {args.max_length}{ragged}{lora}")
    head = (f"{'method':15s} {'step s':>8s} {'first s':>8s} {'tok/s':>9s} {'peak GiB':>9s} {'time/DPO':>9s} "
            f"{'tok/s/DPO':>10s} {'mem/DPO':>8s} {'dec pos':>8s}")
    has_mfu = "mfu" in rows[0]
    print(head + (f" {'MFU':>6s}" if has_mfu else ""))
    for r in rows:
        line = (
            f"{r['method']:15s} {r['step_s']:8.3f} {r['first_s']:8.2f} {r['tokens_per_s']:9.0f} {r['peak_mem_gib']:9.2f} "
            f"{r['step_s'] / base['step_s']:9.2f} {r['tokens_per_s'] / base['tokens_per_s']:10.2f} "
            f"{r['peak_mem_gib'] / base['peak_mem_gib']:8.2f} {r['decoder_tokens']:8.0f}"
        )
        print(line + (f" {r['mfu']:6.1%}" if has_mfu else ""))
    print_ratios(rows, "+fused", "fused/eager")
    print_ratios(rows, "+1row", "1row/multi")
    print_sharding(rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.method:  # child mode: one variant, its row as JSON
        print(json.dumps(measure_workers(args) if args.strategy != "none" else measure(args)))
        return 0
    rows = run_variants(args)
    if not rows:
        sys.exit("no method could be measured")
    print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
