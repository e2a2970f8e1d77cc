"""Training configuration: typed dataclasses, loaded from YAML plus ``section.key=value`` overrides and validated
at load time (types, ranges, registered names, incompatible combinations), before Ray or any model starts.

Nothing this module imports loads torch (the data and mask sections live apart from their readers and networks;
the loss registry imports torch only to compute), so a bad key, value or choice is one line in well under a
second, and ``sparsepo train --help`` lists every key (:func:`config_keys_help`); tests/sparsepo/test_cli_startup.py."""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sparsepo.config.flags import keys_help
from sparsepo.config.typed import ConfigError, as_number, build, maybe_number, spec
from sparsepo.data.config import DataConfig
from sparsepo.objectives.losses import LOSSES, get_loss, loss_params
from sparsepo.objectives.mask_config import MaskConfig

__all__ = ["ConfigError", "TrainConfig", "as_number", "load_config", "maybe_number"]


@dataclass(frozen=True)
class ModelConfig:
    """Policy and reference models, by hub name, local folder or offline alias (``smollm2``, ``tiny-llama``...)."""

    name: str = "smollm2"  # the policy: hub name, local folder or offline alias
    ref: str | None = None  # default: the same weights as the policy (the SFT model)
    oracle: str | None = None  # zoo weightings (tisdpo, cdpo, tgdpo, sepo): a model trained on the chosen side
    gguf_file: str | None = None  # a .gguf file inside model.name's folder/repo (dequantised on load)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"  # storage dtype; bf16 compute: optim.bf16


@dataclass(frozen=True)
class OptimConfig:
    """The policy's optimizer (AdamW), its schedule and the batch sizes."""

    lr: float = spec(5e-6, gt=0)  # peak learning rate (linear warmup, then cosine decay)
    weight_decay: float = spec(0.0, ge=0)  # the policy's; mask networks have their own (mask.weight_decay)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's (beta1, beta2); an override: optim.betas=0.9,0.95
    warmup_ratio: float = spec(0.1, ge=0, le=1)  # fraction of the optimizer steps spent warming up
    max_steps: int | None = spec(None, ge=1)  # optimizer steps; None = `epochs` passes over the data
    epochs: float = spec(1.0, gt=0)  # passes over the data when max_steps is null
    batch_size: int = spec(4, ge=1)  # pairs per worker per micro-step
    grad_accum: int = spec(1, ge=1)  # micro-steps per optimizer step
    max_grad_norm: float = spec(1.0, gt=0)  # gradient clipping (global L2 norm)
    bf16: bool = True  # autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX); else the storage dtype
    # auto = fused, the same update as the loop up to float rounding (tests/sparsepo/training/test_trainer.py)
    adamw: Literal["auto", "fused", "foreach", "loop"] = spec(
        "auto", help="AdamW kernel: fused (one kernel over all tensors; 3.6x faster than the loop on a 2-core CPU "
        "for 148M params), foreach, or the per-tensor loop; auto = fused")


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters (peft). No dropout: preference objectives compare two passes' log-probs, so every dropout
    (LoRA's included) is off."""

    r: int = spec(0, ge=0)  # 0 = full fine-tuning
    alpha: int = spec(16, gt=0)  # LoRA scaling: alpha / r
    target_modules: str | list[str] = "all-linear"  # peft's: all-linear, or a list of module names
    # The adapters, the LM head and the norms stay in full precision; checkpoints merge into the unquantised base.
    quantize: Literal["none", "nf4", "fp4"] = spec(
        "none", help="QLoRA: the frozen base's linear layers stored in 4 bits (bitsandbytes); none: the model's dtype")


@dataclass(frozen=True)
class RunConfig:
    """Ray Train workers, checkpoints, logging, evaluation, and how the training step is computed."""

    name: str | None = None  # None: a fresh <method>-<date>-<time> per run (set on the driver)
    storage_path: str = "runs"  # local folder or s3:// URI; the run is <storage_path>/<name>
    num_workers: int = spec(
        1, ge=0, help="Ray Train workers (processes; one GPU each with use_gpu); 0: Ray Train's local mode, the loop "
        "runs in the calling process (the `sparsepo train` driver, a sweep trial's actor) with no Train controller "
        "or worker actors (seconds less start-up; no Ray at all for `sparsepo train`), on the local GPU with "
        "use_gpu; it gives up worker restarts (run.max_failures must be 0) and more than one process")
    strategy: Literal["ddp", "fsdp"] = spec(
        "ddp", help="ddp: every worker holds the whole policy (DDP when num_workers > 1); fsdp: the policy, its "
        "gradients and AdamW state are sharded over the workers (FSDP2, sparsepo.training.sharding); the frozen "
        "reference is not")
    activation_checkpointing: bool = False  # recompute block activations in backward (less memory, ~1 more forward)
    use_gpu: bool = False  # one GPU per worker
    cpus_per_worker: float | None = spec(None, gt=0)  # None: the cluster's CPUs / num_workers (sweeps: split between trials)
    seed: int = 0  # model init (masks), data order
    log_every: int = spec(1, ge=1)  # optimizer steps between reported metrics
    save_every: int = spec(0, ge=0)  # optimizer steps between checkpoints; 0 = only at the end
    keep_checkpoints: int | None = spec(2, ge=1)  # newest checkpoints kept (null: all)
    max_failures: int = spec(0, ge=-1)  # -1: retry forever
    chunk_size: int = spec(1024, ge=1)  # positions per chunk of the fp32 LM-head / token-KL computation
    log_kl: bool = False  # also compute token KL (full vocabulary) for objectives that only log it (dpo, dpop)
    shared_prompt: bool = True  # run each pair's prompt once for chosen and rejected (sparsepo.training.packing)
    multi_pair: bool = True  # with shared_prompt, SDPA models: all pairs in one row, attention pair by pair (no padding)
    fused_head: bool | Literal["auto"] = "auto"  # fused LM head / token KL (sparsepo.training.fused_head); auto: where faster
    resume: bool = False  # continue the run `name` from its latest checkpoint (never implicit)
    resume_from: str | None = None  # a checkpoint directory to start a new run from
    eval_every: int = spec(0, ge=0)  # steps between evaluator calls (0 = never)
    evaluator: str | None = None  # "module:factory"; factory(**evaluator_args)(policy, ref, tokenizer, step) -> metrics
    evaluator_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the evaluator factory
    chaos_kill_at_step: int = spec(0, ge=0)  # fault-tolerance drill: SIGKILL rank 0 once at this step (0 = off)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the method and its hyper-parameters, then one section per concern (``sparsepo train
    --help`` lists every key)."""

    method: str = spec("sparsepo", choices=lambda: LOSSES)  # a registered objective (sparsepo.objectives.losses)
    # The values given, not merged with the method's defaults (a sweep that switches method keeps those the new
    # method takes); checked at load against its typed hyper-parameters (sparsepo.objectives.loss_params): loss_hparams().
    loss: dict[str, float] = spec(default_factory=dict, help="the method's hyper-parameters (loss.beta=0.2...)")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def loss_hparams(self) -> dict[str, float]:
        """The method's hyper-parameters: its METHODS.md defaults updated by ``loss``; unknown names are an error."""
        return loss_params(self.method, self.loss)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "mask": MaskConfig, "optim": OptimConfig, "lora": LoraConfig, "run": RunConfig}
# mask.* keys that apply to each kind of mask source (LossSpec.mask)
MASK_KEYS = {"learned": {"kind", "layers", "depth", "sharing", "weight_decay", "hidden", "init", "init_sparsity", "lr"},
             "activation": {"mapo"}}


def config_keys_help() -> str:
    """Every key of a training config with its type, default, choices and help, then each method's ``loss.*``
    keys with their defaults: the epilog of ``sparsepo train --help`` (no torch needed)."""
    width = max(map(len, LOSSES))
    by_method = [f"  {name:<{width}}  " + (" ".join(f"{k}={v:g}" for k, v in spec_.defaults.items()) or "(none)")
                 for name, spec_ in sorted(LOSSES.items())]
    return ("config keys (YAML sections, or section.key=value overrides):\n" + keys_help(TrainConfig)
            + "\n\nloss.* keys by method (floats; defaults from docs/METHODS.md):\n" + "\n".join(by_method))


def check_combinations(values: dict[str, Any], cfg: TrainConfig, where: str) -> None:
    """Keys set explicitly that the chosen method would silently ignore are errors."""
    kind = get_loss(cfg.method).mask
    allowed = MASK_KEYS.get(kind, set())
    for key in values.get("mask") or {}:
        if key not in allowed:
            takes = f"takes mask.{sorted(allowed)}" if allowed else "has no mask"
            raise ConfigError(f"{where}: mask.{key}: method {cfg.method!r} {takes}; remove the key or change method")
    spec_ = get_loss(cfg.method)
    if spec_.needs_oracle and not cfg.model.oracle:
        raise ConfigError(f"{where}: model.oracle: method {cfg.method!r} weighs tokens by an oracle's reward "
                          f"({spec_.weights}); set model.oracle to a model trained on the chosen side (e.g. a DPO run)")
    if cfg.model.oracle and not spec_.needs_oracle:
        raise ConfigError(f"{where}: model.oracle: method {cfg.method!r} reads no oracle; remove the key")
    if cfg.lora.r == 0 and any(k != "r" for k in values.get("lora") or {}):
        raise ConfigError(f"{where}: lora.*: set lora.r > 0 to train LoRA adapters (lora.r is 0: full fine-tuning)")
    if cfg.lora.quantize != "none" and cfg.model.gguf_file:
        raise ConfigError(f"{where}: lora.quantize: a GGUF model (model.gguf_file) cannot be re-quantised; pass a "
                          "model folder (safetensors) or set lora.quantize=none")
    check_strategy(cfg, where)
    check_local_mode(cfg, where)
    if cfg.run.resume and cfg.run.resume_from:
        raise ConfigError(f"{where}: run.resume and run.resume_from: choose one")
    if cfg.run.resume and not cfg.run.name:
        raise ConfigError(f"{where}: run.resume needs run.name (the run to continue)")


def check_strategy(cfg: TrainConfig, where: str) -> None:
    """What ``run.strategy=fsdp`` does not support is refused before anything starts."""
    if cfg.run.strategy != "fsdp":
        return
    if cfg.lora.r > 0:
        raise ConfigError(f"{where}: run.strategy: fsdp shards full fine-tuning only; set lora.r=0 or run.strategy=ddp "
                          "(LoRA's trainable state is small: DDP replicates it cheaply)")
    if cfg.run.evaluator:
        raise ConfigError(f"{where}: run.evaluator: rank 0 evaluates alone, which a sharded policy cannot do; "
                          "remove run.evaluator or set run.strategy=ddp")


def train_processes(num_workers: int) -> int:
    """Processes that train for ``run.num_workers``: local mode (0) trains in one, the calling process."""
    return max(num_workers, 1)


def check_local_mode(cfg: TrainConfig, where: str) -> None:
    """What local mode (``run.num_workers=0``: one process, no Train controller) cannot do is refused."""
    if cfg.run.num_workers != 0:
        return
    if cfg.run.max_failures != 0:
        raise ConfigError(f"{where}: run.max_failures: run.num_workers=0 (local mode) has no worker to restart; "
                          "set run.max_failures=0 or run.num_workers>=1")
    if cfg.run.strategy == "fsdp":
        raise ConfigError(f"{where}: run.strategy: fsdp shards over several workers; run.num_workers=0 (local mode) "
                          "trains in one process: set run.strategy=ddp or run.num_workers>=1")


def with_run_name(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with a fresh ``<method>-<date>-<time>`` run name if it has none, so a rerun never reuses a run."""
    if cfg.run.name:
        return cfg
    name = f"{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"  # unique within a second too
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=name))


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file; errors name the file (``what`` says which kind of file)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file not found: {p}")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{p}: top level must be a mapping, got {type(values).__name__}")
    return values


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-5", "method=dpo"]`` -> nested dict updated in place; values parse as YAML scalars."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-5)")
        node = values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: '{p}' is not a section")
        node[leaf] = yaml.safe_load(raw)
    return values


def from_dict(values: dict[str, Any], where: str = "config") -> TrainConfig:
    """A validated TrainConfig from a nested mapping (also a full ``to_dict()``); ConfigError naming ``where``
    and the key otherwise."""
    cfg = build(TrainConfig, values, where)
    checked = loss_params(cfg.method, cfg.loss, f"{where}: loss")
    # `loss` keeps only the keys given (a sweep may switch methods), now as the floats they were checked as
    return dataclasses.replace(cfg, loss={k: checked[k] for k in cfg.loss})


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML config (or defaults when ``path`` is None), apply ``key=value`` overrides, and validate both,
    including keys the chosen method would ignore. Errors name the file (or the overrides) and the key."""
    values = read_yaml_mapping(path, "config") if path is not None else {}
    where = str(path or "defaults")
    check_combinations(values, from_dict(values, where), where)
    if overrides:
        where = f"{where} + overrides"
        values = apply_overrides(values, overrides)
        check_combinations(values, from_dict(values, where), where)
    return from_dict(values, where)
