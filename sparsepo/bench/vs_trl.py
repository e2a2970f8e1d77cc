"""Training throughput against TRL's ``DPOTrainer``, at its defaults and at its best, on identical data and model.

    sparsepo bench vs_trl [--systems trl-default trl-best dpo sparsepo] [--workload short|realistic]
                          [--isa native|avx2] [--repeats 1] [--model smollm2] [--pairs N] [--batch-size 4]
                          [--max-length N] [--steps 12] [--ours run.log_kl=true ...] [--trl padding_free=true ...]

Systems (each in its own process, interleaved over ``--repeats`` rounds; numbers are medians over rounds):
- ``trl-default``: TRL 1.16 as shipped: bf16 autocast on any CPU (emulated where the CPU lacks bf16 matmuls),
  gradient checkpointing on, its fused AdamW.
- ``trl-best``: TRL tuned for this machine: gradient checkpointing off, bf16 only where it is native
  (AVX512-BF16/AMX, CUDA), fused AdamW; ``--trl key=value`` sets any further ``DPOConfig`` field.
- any of our methods (``dpo``, ``sparsepo``, ...): ``python -m sparsepo.training.train`` at its defaults (Ray started
  inside the measured process, so its start-up counts).
Ratios are taken against the faster TRL. Workloads (``sparsepo.bench.workloads``): ``short`` (one shared
~40-token prompt, one-sentence responses) and ``realistic`` (distinct prompts and responses of 64-256 tokens).
``--isa avx2`` caps torch, oneDNN and MKL at AVX2 in every child, standing for an AVX2-only CPU on a newer one.

Columns: median s/step over steps 3..``--steps``; tokens/s (the workload's tokens per pair, prompt+chosen and
prompt+rejected run separately and cut to ``--max-length``, times pairs per step, over s/step: the same work
credited to both systems); model FLOP utilisation (6 N per policy token + 2 N per reference token, N the
weights of the model's matmuls, over the matmul peak measured here at the system's precision and threads);
start-up (launch to the start of step 1: end of step 1 minus a median step); peak RSS of the training process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparsepo.bench.workloads import WORKLOADS, tokens_per_pair, write_workload

FIRST_TIMED_STEP = 3
AVX2_CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
TRL_SYSTEMS = ("trl-default", "trl-best")


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


class Clock:
    """An evaluator for our trainer (called in the rank-0 worker after each step): clocks, peak RSS, threads."""

    def __call__(self, policy, ref, tokenizer, step):  # noqa: ANN001, ANN204
        import torch

        return {"bench/clock_s": time.perf_counter(), "bench/wall_s": time.time(), "bench/peak_rss_gib": peak_rss_gib(),
                "bench/threads": torch.get_num_threads()}


def step_times(clocks: list[float]) -> list[float]:
    """Times of steps ``FIRST_TIMED_STEP..`` from the end-of-step clocks of steps 1, 2, ..."""
    return [b - a for a, b in zip(clocks[FIRST_TIMED_STEP - 2 : -1], clocks[FIRST_TIMED_STEP - 1 :], strict=True)]


def summary(clocks: list[float], first_step_end_wall: float, t0: float) -> dict:
    """Median timed step and start-up (launch ``t0`` to the start of step 1), both in seconds."""
    step_s = statistics.median(step_times(clocks))
    return {"step_s": step_s, "startup_s": first_step_end_wall - t0 - step_s}


def run_ours(args: argparse.Namespace, method: str, data: Path, out_dir: Path) -> dict:
    import torch

    from sparsepo.config.schema import load_config
    from sparsepo.training.hardware import mixed_precision
    from sparsepo.training.train import train
    from sparsepo.training.trainer import adamw_name

    overrides = [
        f"method={method}", f"model.name={args.model}", f"data.path={data}", f"data.max_length={args.max_length}",
        f"data.max_prompt_length={args.max_length // 2}", f"optim.batch_size={args.batch_size}", "optim.grad_accum=1",
        f"optim.max_steps={args.steps}", "run.log_every=1", "run.eval_every=1", "run.evaluator=sparsepo.bench.vs_trl:Clock",
        f"run.storage_path={out_dir}", f"run.name=bench-{method}", *args.ours,
    ]
    cfg = load_config(None, overrides)
    history = train(cfg).return_value
    bf16 = mixed_precision(torch.device("cpu"), cfg.optim.bf16) is not None
    return {**summary([m["bench/clock_s"] for m in history], history[0]["bench/wall_s"], args.t0),
            "peak_rss_gib": max(m["bench/peak_rss_gib"] for m in history), "threads": history[-1]["bench/threads"],
            "precision": "bf16" if bf16 else "fp32", "optimizer": f"adamw_{adamw_name(cfg.optim.adamw)}", "grad_ckpt": False}


def trl_config(settings: str, extra: list[str], **common) -> object:  # noqa: ANN003
    """TRL's ``DPOConfig`` at its defaults or at its best on this machine, then ``extra`` ``key=value`` fields."""
    import torch
    import yaml
    from trl import DPOConfig

    from sparsepo.training.hardware import cpu_has_native_bf16

    cuda = torch.cuda.is_available()
    tuned = {} if settings == "default" else {"gradient_checkpointing": False, "bf16": cuda or cpu_has_native_bf16(),
                                              "optim": "adamw_torch_fused"}
    tuned.update({k: yaml.safe_load(v) for k, v in (e.split("=", 1) for e in extra)})
    # TRL's bf16 default refuses a CPU unless told (use_cpu); it then autocasts, native bf16 or not
    return DPOConfig(use_cpu=not cuda, save_strategy="no", report_to=[], seed=0, logging_steps=1, **common, **tuned)


def run_trl(args: argparse.Namespace, settings: str, data: Path, out_dir: Path) -> dict:
    import datasets
    import torch
    from transformers import TrainerCallback
    from trl import DPOTrainer

    from sparsepo.training.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    clocks: list[float] = []
    walls: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
            clocks.append(time.perf_counter())
            walls.append(time.time())

    config = trl_config(settings, args.trl, output_dir=str(out_dir), per_device_train_batch_size=args.batch_size,
                        max_length=args.max_length, max_steps=args.steps)
    trainer = DPOTrainer(load_causal_lm(args.model, dtype="float32"), args=config, processing_class=load_tokenizer(args.model),
                         train_dataset=datasets.load_dataset("json", data_files=str(data))["train"], callbacks=[StepClock()])
    trainer.train()
    return {**summary(clocks, walls[0], args.t0), "peak_rss_gib": peak_rss_gib(), "threads": torch.get_num_threads(),
            "precision": "bf16" if config.bf16 else "fp32", "optimizer": str(getattr(config.optim, "value", config.optim)),
            "grad_ckpt": bool(config.gradient_checkpointing)}


def matmul_peaks(model: str) -> dict:
    """This process's matmul peak in GFLOP/s for fp32 and bf16 (2048^3, best of 5) and N, the model's matmul weights."""
    import torch

    from sparsepo.training.models import load_causal_lm

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        a @ b
        best = min(_timed(lambda a=a, b=b: a @ b) for _ in range(5 if name == "fp32" else 2))
        peaks[name] = 2 * 2048**3 / best / 1e9
    lm = load_causal_lm(model, dtype="float32")
    n = sum(m.weight.numel() for m in lm.modules() if isinstance(m, torch.nn.Linear))
    return {"peak_gflops": peaks, "matmul_params": n, "threads": torch.get_num_threads()}


def _timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def child(args: argparse.Namespace) -> dict:
    if args.system == "peaks":
        return matmul_peaks(args.model)
    out_dir = Path(tempfile.mkdtemp(prefix="sparsepo-bench-"))
    try:
        if args.system in TRL_SYSTEMS:
            return run_trl(args, args.system.removeprefix("trl-"), Path(args.data), out_dir)
        return run_ours(args, args.system, Path(args.data), out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def measure(args: argparse.Namespace, system: str, data: Path) -> dict | None:
    """Run ``system`` in a fresh process (under the ``--isa`` cap); its result dict, or None if it failed."""
    cmd = [sys.executable, "-m", "sparsepo.bench.vs_trl", "--system", system, "--data", str(data), "--model", args.model,
           f"--batch-size={args.batch_size}", f"--max-length={args.max_length}", f"--steps={args.steps}",
           f"--t0={time.time()}", *[f"--ours={o}" for o in args.ours], *[f"--trl={o}" for o in args.trl]]
    root = str(Path(__file__).resolve().parents[2])  # the checkout, for a source tree run
    env = {**os.environ, **(AVX2_CAP if args.isa == "avx2" else {}), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if out.returncode != 0:
        print(f"{system}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_line(isa: str) -> str:
    """The CPU's model name and the flags that decide fp32/bf16 speed, and the ISA the children ran under."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "unknown")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"cpu: {name}, {os.cpu_count()} cpus, flags {' '.join(shown) or '-'}; run under ISA {isa}"


def medians(rows: dict[str, list[dict]]) -> dict[str, dict]:
    """Per system: the median over rounds of each number, the first round's descriptive fields."""
    return {s: {k: (statistics.median(r[k] for r in rs) if isinstance(rs[0][k], float) else rs[0][k]) for k in rs[0]}
            for s, rs in rows.items() if rs}


def table(rows: dict[str, list[dict]], peaks: dict, tokens: float, args: argparse.Namespace) -> str:
    med = medians(rows)
    trl = [s for s in TRL_SYSTEMS if s in med]
    base = med[min(trl, key=lambda s: med[s]["step_s"])] if trl else next(iter(med.values()))
    ours_dpo = med.get("dpo")
    step_flops = args.batch_size * tokens * 8 * peaks["matmul_params"]  # 6N policy + 2N reference per token
    gf = peaks["peak_gflops"]
    lines = [cpu_line(args.isa),
             f"matmul peak ({peaks['threads']} threads): fp32 {gf['fp32']:.0f} GFLOP/s, bf16 {gf['bf16']:.0f} GFLOP/s; "
             f"model {args.model} ({peaks['matmul_params'] / 1e6:.0f}M matmul weights)",
             f"workload {args.workload}: {tokens:.0f} tokens/pair, {args.batch_size} pairs/step, max_length "
             f"{args.max_length}; median over steps {FIRST_TIMED_STEP}-{args.steps}, {args.repeats} round(s); ratios vs "
             f"the faster TRL" + (f"; ours: {' '.join(args.ours)}" if args.ours else "")
             + (f"; trl: {' '.join(args.trl)}" if args.trl else ""),
             f"{'system':12s} {'prec':4s} {'thr':>3s} {'optimizer':18s} {'ckpt':4s} {'s/step':>7s} {'tok/s':>6s} "
             f"{'MFU':>5s} {'start s':>7s} {'GiB':>5s} {'t/TRL':>6s} {'m/TRL':>6s} {'t/dpo':>6s} {'m/dpo':>6s}"]
    for s, m in med.items():
        mfu = step_flops / m["step_s"] / (gf[m["precision"]] * 1e9)
        rel = (f"{m['step_s'] / ours_dpo['step_s']:6.2f} {m['peak_rss_gib'] / ours_dpo['peak_rss_gib']:6.2f}"
               if ours_dpo and s not in TRL_SYSTEMS else f"{'':6s} {'':6s}")
        lines.append(f"{s:12s} {m['precision']:4s} {m['threads']:3d} {m['optimizer'][:18]:18s} "
                     f"{'on' if m['grad_ckpt'] else 'off':4s} {m['step_s']:7.2f} {args.batch_size * tokens / m['step_s']:6.0f} "
                     f"{mfu:5.0%} {m['startup_s']:7.1f} {m['peak_rss_gib']:5.2f} {m['step_s'] / base['step_s']:6.2f} "
                     f"{m['peak_rss_gib'] / base['peak_rss_gib']:6.2f} {rel}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", nargs="+", default=["trl-default", "trl-best", "dpo", "sparsepo"],
                    help="trl-default, trl-best and/or our method names (separate values)")
    ap.add_argument("--workload", choices=WORKLOADS, default="short")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native", help="avx2: cap every child at AVX2")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds; numbers are medians over rounds")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--pairs", type=int, default=None, help="pairs in the data set (default: batch size x steps)")
    ap.add_argument("--batch-size", type=int, default=4, help="pairs per optimizer step")
    ap.add_argument("--max-length", type=int, default=None, help="default: 128 (short), 640 (realistic)")
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps; steps 3.. are timed")
    ap.add_argument("--ours", action="append", default=[], help="an override for our trainer (repeatable)")
    ap.add_argument("--trl", action="append", default=[], help="a DPOConfig field for trl-best, key=value (repeatable)")
    for hidden in ("--system", "--data", "--t0"):  # child mode
        ap.add_argument(hidden, help=argparse.SUPPRESS, type=float if hidden == "--t0" else str)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.steps < FIRST_TIMED_STEP:
        ap.error(f"--steps must be at least {FIRST_TIMED_STEP}")
    if any("," in s for s in args.systems):
        ap.error("--systems takes separate values (--systems trl-best dpo), not a comma list")
    args.max_length = args.max_length or (128 if args.workload == "short" else 640)
    if args.system:
        print(json.dumps(child(args)))
        return 0
    with tempfile.TemporaryDirectory(prefix="sparsepo-pairs-") as d:
        data = Path(d) / "pairs.jsonl"
        write_workload(data, args.workload, args.pairs or args.batch_size * args.steps)
        tokens = tokens_per_pair(data, args.model, args.max_length)
        peaks = measure(args, "peaks", data)
        rows: dict[str, list[dict]] = {s: [] for s in args.systems}
        for r in range(args.repeats):
            for s in args.systems:
                row = measure(args, s, data)
                if row is not None:
                    rows[s].append(row)
                    print(f"round {r + 1} {s}: {row['step_s']:.2f} s/step", file=sys.stderr, flush=True)
    if not any(rows.values()) or peaks is None:
        sys.exit("no system could be measured")
    print(table(rows, peaks, tokens, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
