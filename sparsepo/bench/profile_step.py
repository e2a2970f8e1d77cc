"""Profile one training step (torch.profiler) of ours and/or TRL's DPOTrainer on the same pairs: where the time goes.

    sparsepo bench profile_step [--system ours|trl|both] [--method dpo] [--model smollm2] [--batch-size 4]
                                 [--max-length 128] [--workload short|realistic] [--trl-settings best|default]
                                 [--no-bf16] [--log-kl] [--chunk 1024] [--fused-head auto] [--rows 25]

Both systems read the same ``--batch-size`` conversational pairs of ``--workload`` (as in ``bench vs_trl``), so
every step is one batch of the same pairs. Ours: the batch collated as the trainer does;
the step is reference pass, policy pass, loss, backward and AdamW under the trainer's autocast
(``mixed_precision``). TRL: ``DPOTrainer.train()`` at ``--trl-settings`` (``bench vs_trl``'s ``trl-best`` by
default: no gradient checkpointing, bf16 only where native, fused AdamW; ``default``: as shipped), profiled from
the start to the end of its third optimizer step. Each system is timed and profiled after two warm-up steps; the
table is the profiler's operators by self CPU time (on CUDA: by CUDA time). Each system runs in a fresh process;
with ``--system both`` their top-``--rows`` lists are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sparsepo.bench.workloads import WORKLOADS, write_workload

WARMUP = 2


def _profile(step: Any, device: Any) -> Any:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
    return prof


def profile_ours(args: argparse.Namespace, data: Path, device: Any) -> tuple[str, Any]:
    """``(summary line, profiler)`` of one step of our trainer's computation on the pairs in ``data``."""
    import torch

    from sparsepo.bench.common import make_step
    from sparsepo.config.schema import load_config
    from sparsepo.data.preference import PreferenceCollator, load_preference_data
    from sparsepo.objectives.losses import get_loss
    from sparsepo.objectives.masks import MaskConfig, model_dims
    from sparsepo.training.hardware import mixed_precision
    from sparsepo.training.models import build_policy, load_causal_lm, load_tokenizer
    from sparsepo.training.preference_model import PreferenceModel, Reference
    from sparsepo.training.trainer import adamw_kernel

    cfg = load_config(None, [f"model.name={args.model}", f"data.path={data}", f"data.limit={args.batch_size}",
                             f"data.max_length={args.max_length}", f"data.max_prompt_length={args.max_length // 2}"])
    tokenizer = load_tokenizer(args.model)
    pairs, _ = load_preference_data(cfg.data, tokenizer)
    batch = {k: v.to(device) for k, v in PreferenceCollator(tokenizer.pad_token_id)(list(pairs)).items()}
    torch.manual_seed(0)
    policy = build_policy(cfg, device)
    ref = None
    if get_loss(args.method).needs_reference:
        ref = Reference(load_causal_lm(args.model).to(device), args.method, MaskConfig())
    fused = {"true": True, "false": False}.get(args.fused_head, args.fused_head)
    model = PreferenceModel(policy, args.method, mask=MaskConfig(), ref_dims=model_dims(policy),
                            chunk_size=args.chunk, log_kl=args.log_kl, fused_head=fused).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, **adamw_kernel("auto"))
    autocast = mixed_precision(device, not args.no_bf16)
    step = make_step(model, ref, opt, batch, autocast)
    for _ in range(WARMUP):
        step()
    t = time.perf_counter()
    step()
    line = (f"ours {args.method}: one step {time.perf_counter() - t:.3f} s, batch {tuple(batch['input_ids'].shape)}, "
            f"{int(batch['loss_mask'].sum())} response tokens, threads {torch.get_num_threads()}, "
            f"autocast {autocast is not None}, fused head {model.fused(device)}")
    return line, _profile(step, device)


def profile_trl(args: argparse.Namespace, data: Path, device: Any) -> tuple[str, Any]:
    """``(summary line, profiler)`` of TRL DPOTrainer's third optimizer step on the pairs in ``data``."""
    import datasets
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback
    from trl import DPOTrainer

    from sparsepo.bench.vs_trl import trl_config
    from sparsepo.training.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    prof = profile(activities=acts)
    seen: dict[str, Any] = {}

    class ProfileOneStep(TrainerCallback):
        """Times the step after ``WARMUP`` steps, then profiles the next one."""

        def on_step_begin(self, a, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            if state.global_step == WARMUP:
                seen["t"] = time.perf_counter()
            elif state.global_step == WARMUP + 1:
                prof.__enter__()

        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            if state.global_step == WARMUP + 1:  # global_step counts the step just finished
                seen["step_s"] = time.perf_counter() - seen["t"]
            elif state.global_step == WARMUP + 2:
                prof.__exit__(None, None, None)

    out_dir = tempfile.mkdtemp(prefix="sparsepo-profile-trl-")
    config = trl_config(args.trl_settings, [f"bf16={not args.no_bf16}"] if args.no_bf16 else [], output_dir=out_dir,
                        per_device_train_batch_size=args.batch_size, max_length=args.max_length, max_steps=WARMUP + 2)
    trainer = DPOTrainer(load_causal_lm(args.model, dtype="float32"), args=config, processing_class=tokenizer,
                         train_dataset=datasets.load_dataset("json", data_files=str(data))["train"],
                         callbacks=[ProfileOneStep()])
    trainer.train()
    shutil.rmtree(out_dir, ignore_errors=True)
    line = (f"TRL DPOTrainer: one step {seen['step_s']:.3f} s, {args.batch_size} pairs, max_length {args.max_length}, "
            f"threads {torch.get_num_threads()}, bf16 {config.bf16}, gradient checkpointing {config.gradient_checkpointing}")
    return line, prof


def top_ops(prof: Any, device: Any, rows: int) -> list[tuple[str, float, int]]:
    """``(operator, self time ms, calls)`` of the ``rows`` most expensive operators (self CPU; CUDA on CUDA)."""
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr), reverse=True)[:rows]
    return [(e.key, getattr(e, attr) / 1e3, e.count) for e in events]


def side_by_side(left: list[tuple[str, float, int]], right: list[tuple[str, float, int]], titles: tuple[str, str]) -> str:
    """Two top-operator lists as one table: rank, then operator / self ms / calls of each."""
    w = 34
    head = f"{'#':>3s}  {titles[0][:w]:{w}s} {'ms':>8s} {'calls':>6s}   {titles[1][:w]:{w}s} {'ms':>8s} {'calls':>6s}"
    lines = [head, "-" * len(head)]
    for i in range(max(len(left), len(right))):
        cells = []
        for ops in (left, right):
            name, ms, n = ops[i] if i < len(ops) else ("", 0.0, 0)
            cells.append(f"{name[:w]:{w}s} {ms:8.1f} {n:6d}" if name else " " * (w + 16))
        lines.append(f"{i + 1:3d}  {cells[0]}   {cells[1]}")
    for title, ops in zip(titles, (left, right), strict=True):
        lines.append(f"{title}: top {len(ops)} total {sum(ms for _, ms, _ in ops):.1f} ms")
    return "\n".join(lines)


def run_one(args: argparse.Namespace, system: str, data: Path, device: Any) -> dict:
    """Profile ``system`` in this process: its summary line, top operators and (single system) full table."""
    line, prof = (profile_ours if system == "ours" else profile_trl)(args, data, device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return {"line": line, "top": top_ops(prof, device, args.rows),
            "table": prof.key_averages().table(sort_by=key, row_limit=args.rows)}


def run_child(system: str, argv: list[str], data: Path) -> dict | None:
    """``run_one`` in a fresh process, so that neither system inherits the other's models, threads or allocator."""
    cmd = [sys.executable, "-m", "sparsepo.bench.profile_step", *argv, "--one", system, "--data", str(data)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"{system}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["ours", "trl", "both"], default="ours")
    ap.add_argument("--method", default="dpo", help="our method (TRL: always its DPO)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=None, help="default: 128 (short), 640 (realistic)")
    ap.add_argument("--workload", choices=WORKLOADS, default="short", help="the pairs (as in bench vs_trl)")
    ap.add_argument("--trl-settings", choices=["default", "best"], default="best", help="TRL as shipped or tuned")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--log-kl", action="store_true")
    ap.add_argument("--fused-head", choices=["auto", "true", "false"], default="auto", help="run.fused_head (ours)")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--one", choices=["ours", "trl"], help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.max_length = args.max_length or (128 if args.workload == "short" else 640)
    if args.one:
        import torch

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        print("RESULT " + json.dumps(run_one(args, args.one, Path(args.data), device)), flush=True)
        return 0
    own = list(sys.argv[1:] if argv is None else argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="sparsepo-pairs-") as d:
        data = Path(d) / "pairs.jsonl"
        write_workload(data, args.workload, args.batch_size)
        for system in (["ours", "trl"] if args.system == "both" else [args.system]):
            result = run_child(system, own, data)
            if result is None:
                return 1
            print(result["line"], flush=True)
            if args.system != "both":
                print(result["table"])
            results[system] = [tuple(op) for op in result["top"]]
    if args.system == "both":
        print(side_by_side(results["ours"], results["trl"], (f"ours ({args.method})", "TRL DPOTrainer")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
