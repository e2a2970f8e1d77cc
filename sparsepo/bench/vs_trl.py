"""Training throughput against TRL's ``DPOTrainer`` on identical data, model and batch, each system in its own process.

    sparsepo bench vs_trl [--systems trl-dpo,dpo,sparsepo] [--repeats 3] [--model smollm2] [--pairs 56]
                           [--batch-size 4] [--max-length 128] [--steps 12] [--ours run.log_kl=true ...]

TRL is a bench-only dependency (``pip install -e .[bench]``). Both systems read one JSONL file of ``--pairs``
conversational review pairs (``offline:review-pairs``, deterministic) and train the same fp32 model with
``--batch-size`` pairs per optimizer step and sequences cut to ``--max-length`` tokens. TRL runs with its own
defaults (on a CPU machine with ``use_cpu=True``, which its bf16 default demands: bf16 autocast on the
CPU, gradient checkpointing); ours is ``python -m sparsepo.train`` with default settings (``sparsepo.train.train`` in a fresh
process, so Ray start-up is excluded: step times come from timestamps the rank-0 worker reports each step).

Printed per system: median s/step over steps 3..``--steps`` (each a difference of consecutive end-of-step
clocks: forward, backward, optimizer, logging), tokens/s (non-padding tokens of the step / its time), peak RSS
of the process that trains (our Ray Train worker; TRL's trainer process), and ratios to TRL DPO. With
``--repeats`` the systems run in interleaved rounds and every number is the median over rounds; on a shared
machine compare the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_TIMED_STEP = 3


def write_pairs(path: Path, n: int) -> None:
    from sparsepo.io import write_text
    from sparsepo.offline_pairs import review_pairs

    rows = review_pairs(n=n, seed=0)
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} review pairs available, asked for {n}")
    # TRL wants every field conversational when the prompt is; ours renders a plain response the same way.
    rows = [{**r, **{k: [{"role": "assistant", "content": r[k]}] for k in ("chosen", "rejected")}} for r in rows]
    write_text(str(path), "".join(json.dumps(r) + "\n" for r in rows))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


class Clock:
    """An evaluator for our trainer (called in the rank-0 worker after each step): a timestamp and the peak RSS."""

    def __call__(self, policy, ref, tokenizer, step):  # noqa: ANN001, ANN204
        return {"bench/clock_s": time.perf_counter(), "bench/peak_rss_gib": peak_rss_gib()}


def step_times(clocks: list[float]) -> list[float]:
    """Times of steps ``FIRST_TIMED_STEP..`` from the end-of-step clocks of steps 1, 2, ..."""
    return [b - a for a, b in zip(clocks[FIRST_TIMED_STEP - 2 : -1], clocks[FIRST_TIMED_STEP - 1 :], strict=True)]


def run_ours(args: argparse.Namespace, method: str, data: Path, out_dir: Path) -> dict:
    from sparsepo.config import load_config
    from sparsepo.train import train

    overrides = [
        f"method={method}", f"model.name={args.model}", f"data.path={data}", f"data.max_length={args.max_length}",
        f"data.max_prompt_length={args.max_length // 2}", f"optim.batch_size={args.batch_size}", "optim.grad_accum=1",
        f"optim.max_steps={args.steps}", "run.log_every=1", "run.eval_every=1", "run.evaluator=sparsepo.bench.vs_trl:Clock",
        f"run.storage_path={out_dir}", f"run.name=bench-{method}", *args.ours,
    ]
    history = train(load_config(None, overrides)).return_value
    times = step_times([m["bench/clock_s"] for m in history])
    tok_s = [m["tokens_per_s"] for m in history[FIRST_TIMED_STEP - 1 :]]
    return {"step_s": statistics.median(times), "tokens_per_s": statistics.median(tok_s),
            "peak_rss_gib": max(m["bench/peak_rss_gib"] for m in history)}


def run_trl(args: argparse.Namespace, data: Path, out_dir: Path) -> dict:
    import datasets
    import torch
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from sparsepo.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    model = load_causal_lm(args.model, dtype="float32")
    clocks: list[float] = []
    tokens: list[int] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
            clocks.append(time.perf_counter())

    config = DPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=args.batch_size, max_length=args.max_length,
        max_steps=args.steps, logging_steps=1, save_strategy="no", report_to=[], seed=0,
        use_cpu=not torch.cuda.is_available(),  # TRL's bf16 default refuses a CPU unless told; it then autocasts
    )
    trainer = DPOTrainer(model, args=config, train_dataset=datasets.load_dataset("json", data_files=str(data))["train"],
                         processing_class=tokenizer, callbacks=[StepClock()])
    collate = trainer.data_collator

    def counting(examples):  # noqa: ANN001, ANN202
        batch = collate(examples)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    trainer.data_collator = counting
    trainer.train()
    times = step_times(clocks)
    tok_s = [n / t for n, t in zip(tokens[FIRST_TIMED_STEP - 1 : len(clocks)], times, strict=True)]
    return {"step_s": statistics.median(times), "tokens_per_s": statistics.median(tok_s), "peak_rss_gib": peak_rss_gib()}


def child(args: argparse.Namespace) -> dict:
    out_dir = Path(tempfile.mkdtemp(prefix="sparsepo-bench-"))
    try:
        if args.system == "trl-dpo":
            return run_trl(args, Path(args.data), out_dir)
        return run_ours(args, args.system, Path(args.data), out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def measure(args: argparse.Namespace, system: str, data: Path) -> dict | None:
    cmd = [sys.executable, "-m", "sparsepo.bench.vs_trl", "--system", system, "--data", str(data), "--model", args.model,
           f"--batch-size={args.batch_size}", f"--max-length={args.max_length}", f"--steps={args.steps}"]
    cmd += [f"--ours={o}" for o in args.ours]
    root = str(Path(__file__).resolve().parents[2])  # the checkout, for a source tree run
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if out.returncode != 0:
        print(f"{system}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: dict[str, list[dict]], args: argparse.Namespace) -> str:
    med = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in rows.items() if rs}
    base = med.get("trl-dpo") or next(iter(med.values()))
    ours_dpo = med.get("dpo")
    lines = [f"model: {args.model}  pairs/step: {args.batch_size}  max_length: {args.max_length}  "
             f"median over steps {FIRST_TIMED_STEP}-{args.steps} and {args.repeats} round(s)"
             + (f"  ours: {' '.join(args.ours)}" if args.ours else ""),
             f"{'system':10s} {'s/step':>7s} {'tok/s':>7s} {'peak GiB':>9s} {'time/TRL':>9s} {'mem/TRL':>8s} {'time/dpo':>9s}"
             f" {'mem/dpo':>8s}"]
    for s, m in med.items():
        rel = (f"{m['step_s'] / ours_dpo['step_s']:9.2f} {m['peak_rss_gib'] / ours_dpo['peak_rss_gib']:8.2f}"
               if ours_dpo and s != "trl-dpo" else f"{'':9s} {'':8s}")
        lines.append(f"{s:10s} {m['step_s']:7.2f} {m['tokens_per_s']:7.0f} {m['peak_rss_gib']:9.2f} "
                     f"{m['step_s'] / base['step_s']:9.2f} {m['peak_rss_gib'] / base['peak_rss_gib']:8.2f} {rel}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="trl-dpo,dpo,sparsepo", help="trl-dpo and/or our method names")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds; numbers are medians over rounds")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--pairs", type=int, default=56)
    ap.add_argument("--batch-size", type=int, default=4, help="pairs per optimizer step")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps; steps 3.. are timed")
    ap.add_argument("--ours", action="append", default=[], help="an override for our trainer (repeatable)")
    ap.add_argument("--system", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < FIRST_TIMED_STEP:
        ap.error(f"--steps must be at least {FIRST_TIMED_STEP}")
    if args.system:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory(prefix="sparsepo-pairs-") as d:
        data = Path(d) / "pairs.jsonl"
        write_pairs(data, args.pairs)
        systems = args.systems.split(",")
        rows: dict[str, list[dict]] = {s: [] for s in systems}
        for r in range(args.repeats):
            for s in systems:
                row = measure(args, s, data)
                if row is not None:
                    rows[s].append(row)
                    print(f"round {r + 1} {s}: {row['step_s']:.2f} s/step", file=sys.stderr, flush=True)
    if not any(rows.values()):
        sys.exit("no system could be measured")
    print(table(rows, args))

    return 0


if __name__ == "__main__":
    sys.exit(main())
