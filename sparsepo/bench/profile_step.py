"""Profile one training step (torch.profiler) of ours and/or TRL's DPOTrainer on the same pairs: where the time goes.

    sparsepo bench profile_step [--system ours|trl|both] [--method dpo] [--model smollm2] [--batch-size 4]
                                 [--max-length 128] [--workload short|realistic] [--trl-settings best|default]
                                 [--no-bf16] [--log-kl] [--chunk 1024] [--fused-head auto] [--rows 25] [--check]

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
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sparsepo.bench.common import (
    OurStepConfig,
    WorkloadConfig,
    add_config_flags,
    check_models,
    child_command,
    child_extra,
    config_from_args,
    loss_names,
    preflight,
)
from sparsepo.bench.workloads import write_workload
from sparsepo.config.typed import ConfigError, spec

WARMUP = 2


@dataclass(frozen=True)
class ProfileConfig(OurStepConfig, WorkloadConfig):
    system: Literal["ours", "trl", "both"] = spec("ours", help="our step, TRL's DPOTrainer step, or both side by side")
    method: str = spec("dpo", choices=loss_names, help="our method (TRL: always its DPO)")
    trl_settings: Literal["default", "best"] = spec("best", help="TRL as shipped or tuned (as bench vs_trl)")
    rows: int = spec(25, ge=1, help="operators shown")


CONFIG = ProfileConfig  # this benchmark's settings (read by gpu_check and tests/test_docs.py)


def _profile(step: Any, device: Any) -> Any:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
    return prof


def profile_ours(cfg: ProfileConfig, data: Path, device: Any) -> tuple[str, Any]:
    """``(summary line, profiler)`` of one step of our trainer's computation on the pairs in ``data``."""
    import torch

    from sparsepo.bench.common import make_step
    from sparsepo.config.schema import load_config
    from sparsepo.data.preference import PreferenceCollator, load_preference_data
    from sparsepo.objectives.losses import get_loss
    from sparsepo.objectives.masks import MaskConfig, model_dims
    from sparsepo.training.hardware import mixed_precision
    from sparsepo.training.models import build_policy, load_causal_lm, load_tokenizer
    from sparsepo.training.optim import adamw_kernel
    from sparsepo.training.preference_model import PreferenceModel, Reference

    train_cfg = load_config(None, [f"model.name={cfg.model}", f"data.path={data}", f"data.limit={cfg.batch_size}",
                                   f"data.max_length={cfg.length}", f"data.max_prompt_length={cfg.length // 2}"])
    tokenizer = load_tokenizer(cfg.model)
    pairs, _ = load_preference_data(train_cfg.data, tokenizer)
    batch = {k: v.to(device) for k, v in PreferenceCollator(tokenizer.pad_token_id)(list(pairs)).items()}
    torch.manual_seed(0)
    policy = build_policy(train_cfg, device)
    ref = None
    if get_loss(cfg.method).needs_reference:
        ref = Reference(load_causal_lm(cfg.model).to(device), cfg.method, MaskConfig())
    fused = {"true": True, "false": False}.get(cfg.fused_head, cfg.fused_head)
    model = PreferenceModel(policy, cfg.method, mask=MaskConfig(), ref_dims=model_dims(policy),
                            chunk_size=cfg.chunk, log_kl=cfg.log_kl, fused_head=fused).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, **adamw_kernel("auto"))
    autocast = mixed_precision(device, cfg.bf16)
    step = make_step(model, ref, opt, batch, autocast)
    for _ in range(WARMUP):
        step()
    t = time.perf_counter()
    step()
    line = (f"ours {cfg.method}: one step {time.perf_counter() - t:.3f} s, batch {tuple(batch['input_ids'].shape)}, "
            f"{int(batch['loss_mask'].sum())} response tokens, threads {torch.get_num_threads()}, "
            f"autocast {autocast is not None}, fused head {model.fused(device)}")
    return line, _profile(step, device)


def profile_trl(cfg: ProfileConfig, data: Path, device: Any) -> tuple[str, Any]:
    """``(summary line, profiler)`` of TRL DPOTrainer's third optimizer step on the pairs in ``data``."""
    import datasets
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback
    from trl import DPOTrainer

    from sparsepo.bench.vs_trl import trl_config
    from sparsepo.training.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg.model)
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
    config = trl_config(cfg.trl_settings, [] if cfg.bf16 else ["bf16=False"], output_dir=out_dir,
                        per_device_train_batch_size=cfg.batch_size, max_length=cfg.length, max_steps=WARMUP + 2)
    trainer = DPOTrainer(load_causal_lm(cfg.model, dtype="float32"), args=config, processing_class=tokenizer,
                         train_dataset=datasets.load_dataset("json", data_files=str(data))["train"],
                         callbacks=[ProfileOneStep()])
    trainer.train()
    shutil.rmtree(out_dir, ignore_errors=True)
    line = (f"TRL DPOTrainer: one step {seen['step_s']:.3f} s, {cfg.batch_size} pairs, max_length {cfg.length}, "
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


def run_one(cfg: ProfileConfig, system: str, data: Path, device: Any) -> dict:
    """Profile ``system`` in this process: its summary line, top operators and (single system) full table."""
    line, prof = (profile_ours if system == "ours" else profile_trl)(cfg, data, device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return {"line": line, "top": top_ops(prof, device, cfg.rows),
            "table": prof.key_averages().table(sort_by=key, row_limit=cfg.rows)}


def run_child(cfg: ProfileConfig, system: str, data: Path) -> dict | None:
    """``run_one`` in a fresh process, so that neither system inherits the other's models, threads or allocator."""
    proc = subprocess.run(child_command("sparsepo.bench.profile_step", cfg, system=system, data=str(data)),
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"{system}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT "):])


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo bench profile_step")
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    return add_config_flags(ap, ProfileConfig)


def check(cfg: ProfileConfig) -> list[str]:
    """The model resolves and the method is registered; TRL is installed when it is profiled."""
    if cfg.system != "ours" and importlib.util.find_spec("trl") is None:
        raise ConfigError(f"--system {cfg.system} needs TRL (pip install -e '.[bench]'); --system ours runs without it")
    return check_models("profile_step", cfg.model, methods=(cfg.method,))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(ProfileConfig, args)
    if args.child:
        import torch

        extra = child_extra(args)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        print("RESULT " + json.dumps(run_one(cfg, extra["system"], Path(extra["data"]), device)), flush=True)
        return 0
    if preflight("profile_step", args, check(cfg)):
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="sparsepo-pairs-") as d:
        data = Path(d) / "pairs.jsonl"
        write_workload(data, cfg.workload, cfg.batch_size)
        for system in (["ours", "trl"] if cfg.system == "both" else [cfg.system]):
            result = run_child(cfg, system, data)
            if result is None:
                return 1
            print(result["line"], flush=True)
            if cfg.system != "both":
                print(result["table"])
            results[system] = [tuple(op) for op in result["top"]]
    if cfg.system == "both":
        print(side_by_side(results["ours"], results["trl"], (f"ours ({cfg.method})", "TRL DPOTrainer")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
