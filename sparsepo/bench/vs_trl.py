"""Training throughput against TRL's ``DPOTrainer``, at its defaults and at its best, on identical data and model.

    sparsepo bench vs_trl [--systems trl-default trl-best dpo sparsepo ...] [--workload short|realistic]
                          [--isa native|avx2] [--repeats 1] [--model smollm2] [--pairs N] [--batch-size 4]
                          [--max-length N] [--steps 12] [--ours run.log_kl=true ...] [--trl padding_free=true ...]
                          [--check]

Systems (each in its own process, interleaved over ``--repeats`` rounds; numbers are medians over rounds):
- ``trl-default``: TRL 1.16 as shipped: bf16 autocast on any CPU (emulated where the CPU lacks bf16 matmuls),
  gradient checkpointing on, its fused AdamW.
- ``trl-best``: TRL tuned for this machine: gradient checkpointing off, bf16 only where it is native
  (AVX512-BF16/AMX, CUDA), fused AdamW; ``--trl key=value`` sets any further ``DPOConfig`` field.
- any of our methods (``dpo``, ``sparsepo``, ...): ``python -m sparsepo.training.train`` at its defaults (Ray started
  inside the measured process, so its start-up counts).
- ``<method>-local`` (``dpo-local``...): the same with ``run.num_workers=0``, Ray Train's local mode: the loop in the
  measured process itself, no Ray instance, Train controller or worker (its start-up is TRL's kind).
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
import dataclasses
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sparsepo.bench.common import (
    WorkloadConfig,
    add_config_flags,
    check_models,
    child_command,
    child_extra,
    config_from_args,
    loss_names,
    preflight,
)
from sparsepo.bench.workloads import tokens_per_pair, write_workload
from sparsepo.config.typed import ConfigError, spec, suggest

FIRST_TIMED_STEP = 3
AVX2_CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
TRL_SYSTEMS = ("trl-default", "trl-best")
LOCAL_SUFFIX = "-local"  # <method>-local: our method in Ray Train's local mode (run.num_workers=0)


def system_names() -> list[str]:
    """TRL's two settings, every registered method and each in local mode (read when ``--systems`` is checked)."""
    return [*TRL_SYSTEMS, *loss_names(), *(f"{m}{LOCAL_SUFFIX}" for m in loss_names())]


def our_system(system: str) -> tuple[str, list[str]]:
    """``(method, overrides)`` of one of our systems: ``dpo`` -> ``("dpo", [])``, ``dpo-local`` -> ``("dpo",
    ["run.num_workers=0"])``."""
    if system.endswith(LOCAL_SUFFIX):
        return system.removesuffix(LOCAL_SUFFIX), ["run.num_workers=0"]
    return system, []


@dataclass(frozen=True)
class VsTrlConfig(WorkloadConfig):
    systems: tuple[str, ...] = spec(("trl-default", "trl-best", "dpo", "sparsepo"), choices=system_names,
                                    help="trl-default, trl-best and/or registered methods, each in its own process; "
                                    "<method>-local: in Ray Train's local mode (run.num_workers=0, no Ray started)")
    isa: Literal["native", "avx2"] = spec("native", help="avx2: cap every child at AVX2")
    repeats: int = spec(1, ge=1, help="interleaved rounds; numbers are medians over rounds")
    pairs: int | None = spec(None, ge=1, help="pairs in the data set (default: batch size x steps)")
    steps: int = spec(12, ge=FIRST_TIMED_STEP, help=f"optimizer steps; steps {FIRST_TIMED_STEP}.. are timed")
    ours: tuple[str, ...] = spec((), help="overrides for our trainer, key=value (run.log_kl=true optim.lr=1e-5)")
    trl: tuple[str, ...] = spec((), help="DPOConfig fields for trl-best, key=value (padding_free=true)")

    def __post_init__(self) -> None:
        bad = next((kv for kv in self.trl if "=" not in kv or kv.startswith("=")), None)
        if bad is not None:
            raise ConfigError(f"--trl: {bad!r} is not key=value (e.g. padding_free=true)")


CONFIG = VsTrlConfig  # this benchmark's settings (read by gpu_check and tests/test_docs.py)


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


def run_ours(cfg: VsTrlConfig, system: str, data: Path, out_dir: Path, t0: float) -> dict:
    import torch

    from sparsepo.config.schema import load_config
    from sparsepo.training.hardware import mixed_precision
    from sparsepo.training.optim import adamw_name
    from sparsepo.training.train import train

    method, mode = our_system(system)
    train_cfg = load_config(None, train_overrides(cfg, method, data, out_dir) + mode)
    history = train(train_cfg).return_value
    bf16 = mixed_precision(torch.device("cpu"), train_cfg.optim.bf16) is not None
    return {**summary([m["bench/clock_s"] for m in history], history[0]["bench/wall_s"], t0),
            "peak_rss_gib": max(m["bench/peak_rss_gib"] for m in history), "threads": history[-1]["bench/threads"],
            "precision": "bf16" if bf16 else "fp32", "optimizer": f"adamw_{adamw_name(train_cfg.optim.adamw)}",
            "grad_ckpt": False}


def train_overrides(cfg: VsTrlConfig, method: str, data: Path | str, out_dir: Path | str) -> list[str]:
    """Our trainer's ``key=value`` settings for ``method`` on ``data``, then ``--ours``."""
    return [
        f"method={method}", f"model.name={cfg.model}", f"data.path={data}", f"data.max_length={cfg.length}",
        f"data.max_prompt_length={cfg.length // 2}", f"optim.batch_size={cfg.batch_size}", "optim.grad_accum=1",
        f"optim.max_steps={cfg.steps}", "run.log_every=1", "run.eval_every=1", "run.evaluator=sparsepo.bench.vs_trl:Clock",
        f"run.storage_path={out_dir}", f"run.name=bench-{method}", *cfg.ours,
    ]


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


def run_trl(cfg: VsTrlConfig, settings: str, data: Path, out_dir: Path, t0: float) -> dict:
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

    config = trl_config(settings, list(cfg.trl), output_dir=str(out_dir), per_device_train_batch_size=cfg.batch_size,
                        max_length=cfg.length, max_steps=cfg.steps)
    trainer = DPOTrainer(load_causal_lm(cfg.model, dtype="float32"), args=config, processing_class=load_tokenizer(cfg.model),
                         train_dataset=datasets.load_dataset("json", data_files=str(data))["train"], callbacks=[StepClock()])
    trainer.train()
    return {**summary(clocks, walls[0], t0), "peak_rss_gib": peak_rss_gib(), "threads": torch.get_num_threads(),
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


def child(cfg: VsTrlConfig, system: str, data: str, t0: float) -> dict:
    """One system's figures (or the matmul peaks), measured in this process."""
    if system == "peaks":
        return matmul_peaks(cfg.model)
    out_dir = Path(tempfile.mkdtemp(prefix="sparsepo-bench-"))
    try:
        if system in TRL_SYSTEMS:
            return run_trl(cfg, system.removeprefix("trl-"), Path(data), out_dir, t0)
        return run_ours(cfg, system, Path(data), out_dir, t0)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def measure(cfg: VsTrlConfig, system: str, data: Path) -> dict | None:
    """Run ``system`` in a fresh process (under the ``--isa`` cap); its result dict, or None if it failed."""
    cmd = child_command("sparsepo.bench.vs_trl", cfg, system=system, data=str(data), t0=time.time())
    root = str(Path(__file__).resolve().parents[2])  # the checkout, for a source tree run
    env = {**os.environ, **(AVX2_CAP if cfg.isa == "avx2" else {}), "TOKENIZERS_PARALLELISM": "false",
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


def table(rows: dict[str, list[dict]], peaks: dict, tokens: float, cfg: VsTrlConfig) -> str:
    med = medians(rows)
    trl = [s for s in TRL_SYSTEMS if s in med]
    base = med[min(trl, key=lambda s: med[s]["step_s"])] if trl else next(iter(med.values()))
    ours_dpo = med.get("dpo")
    step_flops = cfg.batch_size * tokens * 8 * peaks["matmul_params"]  # 6N policy + 2N reference per token
    gf = peaks["peak_gflops"]
    lines = [cpu_line(cfg.isa),
             f"matmul peak ({peaks['threads']} threads): fp32 {gf['fp32']:.0f} GFLOP/s, bf16 {gf['bf16']:.0f} GFLOP/s; "
             f"model {cfg.model} ({peaks['matmul_params'] / 1e6:.0f}M matmul weights)",
             f"workload {cfg.workload}: {tokens:.0f} tokens/pair, {cfg.batch_size} pairs/step, max_length "
             f"{cfg.length}; median over steps {FIRST_TIMED_STEP}-{cfg.steps}, {cfg.repeats} round(s); ratios vs "
             f"the faster TRL" + (f"; ours: {' '.join(cfg.ours)}" if cfg.ours else "")
             + (f"; trl: {' '.join(cfg.trl)}" if cfg.trl else ""),
             f"{'system':12s} {'prec':4s} {'thr':>3s} {'optimizer':18s} {'ckpt':4s} {'s/step':>7s} {'tok/s':>6s} "
             f"{'MFU':>5s} {'start s':>7s} {'GiB':>5s} {'t/TRL':>6s} {'m/TRL':>6s} {'t/dpo':>6s} {'m/dpo':>6s}"]
    for s, m in med.items():
        mfu = step_flops / m["step_s"] / (gf[m["precision"]] * 1e9)
        rel = (f"{m['step_s'] / ours_dpo['step_s']:6.2f} {m['peak_rss_gib'] / ours_dpo['peak_rss_gib']:6.2f}"
               if ours_dpo and s not in TRL_SYSTEMS else f"{'':6s} {'':6s}")
        lines.append(f"{s:12s} {m['precision']:4s} {m['threads']:3d} {m['optimizer'][:18]:18s} "
                     f"{'on' if m['grad_ckpt'] else 'off':4s} {m['step_s']:7.2f} {cfg.batch_size * tokens / m['step_s']:6.0f} "
                     f"{mfu:5.0%} {m['startup_s']:7.1f} {m['peak_rss_gib']:5.2f} {m['step_s'] / base['step_s']:6.2f} "
                     f"{m['peak_rss_gib'] / base['peak_rss_gib']:6.2f} {rel}")
    return "\n".join(lines)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo bench vs_trl")
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    return add_config_flags(ap, VsTrlConfig)


def check(cfg: VsTrlConfig) -> list[str]:
    """Before any data is written or process started: the model resolves, ``--ours`` makes a valid TrainConfig
    for every method, TRL is installed when a TRL system runs and ``--trl`` names ``DPOConfig`` fields."""
    ours = tuple(dict.fromkeys(our_system(s)[0] for s in cfg.systems if s not in TRL_SYSTEMS))
    lines = check_models("vs_trl", cfg.model, methods=ours or ("dpo",), overrides=cfg.ours)
    for method in ours[1:]:  # a method's own loss keys: each method's TrainConfig
        check_models("vs_trl", methods=(method,), overrides=cfg.ours)
    if set(cfg.systems) & set(TRL_SYSTEMS):
        if importlib.util.find_spec("trl") is None:
            raise ConfigError("--systems: trl-default / trl-best need TRL (pip install -e '.[bench]'); or leave them out")
    if cfg.trl:
        from trl import DPOConfig

        known = {f.name for f in dataclasses.fields(DPOConfig)}
        for key in (kv.split("=", 1)[0] for kv in cfg.trl):
            if key not in known:
                raise ConfigError(f"--trl: {key!r} is not a DPOConfig field{suggest(key, known)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(VsTrlConfig, args)
    if args.child:
        print(json.dumps(child(cfg, **child_extra(args))))
        return 0
    if preflight("vs_trl", args, check(cfg)):
        return 0
    with tempfile.TemporaryDirectory(prefix="sparsepo-pairs-") as d:
        data = Path(d) / "pairs.jsonl"
        write_workload(data, cfg.workload, cfg.pairs or cfg.batch_size * cfg.steps)
        tokens = tokens_per_pair(data, cfg.model, cfg.length)
        peaks = measure(cfg, "peaks", data)
        rows: dict[str, list[dict]] = {s: [] for s in cfg.systems}
        for r in range(cfg.repeats):
            for s in cfg.systems:
                row = measure(cfg, s, data)
                if row is not None:
                    rows[s].append(row)
                    print(f"round {r + 1} {s}: {row['step_s']:.2f} s/step", file=sys.stderr, flush=True)
    if not any(rows.values()) or peaks is None:
        sys.exit("no system could be measured")
    print(table(rows, peaks, tokens, cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
