"""Training configuration: nested dataclasses, loaded from YAML and overridden by ``section.key=value`` pairs."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sparsepo.data import DataConfig
from sparsepo.losses import get_loss
from sparsepo.masks import MaskConfig


@dataclass(frozen=True)
class ModelConfig:
    """Policy and reference models, by hub name, local folder or offline alias (``smollm2``, ``tiny-llama``...)."""

    name: str = "smollm2"
    ref: str | None = None  # default: the same weights as the policy (the SFT model)
    gguf_file: str | None = None
    dtype: str = "float32"  # storage dtype of both models; bf16 compute comes from `optim.bf16`


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-6
    weight_decay: float = 0.0  # the policy's; mask networks have their own (mask.weight_decay)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.1
    max_steps: int | None = None  # optimizer steps; None = `epochs` passes over the data
    epochs: float = 1.0
    batch_size: int = 4  # pairs per worker per micro-step
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    bf16: bool = True  # autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX); else the storage dtype


@dataclass(frozen=True)
class LoraConfig:
    r: int = 0  # 0 = full fine-tuning
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass(frozen=True)
class RunConfig:
    name: str = "sparsepo"
    storage_path: str = "runs"
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float | None = None  # None: the cluster's CPUs / num_workers (sweeps: split between trials)
    seed: int = 0
    log_every: int = 1
    save_every: int = 0  # optimizer steps between checkpoints; 0 = only at the end
    keep_checkpoints: int | None = 2
    max_failures: int = 0
    chunk_size: int = 1024  # positions per chunk of the fp32 LM-head / token-KL computation
    log_kl: bool = False  # also compute token KL (full vocabulary) for objectives that only log it (dpo, dpop)
    resume_from: str | None = None  # a checkpoint directory to start from (same run: Ray resumes by itself)
    eval_every: int = 0  # steps between evaluator calls (0 = never)
    evaluator: str | None = None  # "module:factory"; factory(**evaluator_args)(policy, ref, tokenizer, step) -> metrics
    evaluator_args: dict[str, Any] = field(default_factory=dict)
    chaos_kill_at_step: int = 0  # fault-tolerance drill: SIGKILL rank 0 once at this step (0 = off)


@dataclass(frozen=True)
class TrainConfig:
    method: str = "sparsepo"
    loss: dict[str, float] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def loss_hparams(self) -> dict[str, float]:
        """The method's hyper-parameters: its METHODS.md defaults updated by ``loss``; unknown names are an error."""
        spec = get_loss(self.method)
        unknown = set(self.loss) - set(spec.defaults)
        if unknown:
            raise ValueError(f"method {self.method!r} takes loss.{sorted(spec.defaults)}, not {sorted(unknown)}")
        return {**spec.defaults, **{k: float(as_number(v, f"loss.{k}")) for k, v in self.loss.items()}}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        sub = SECTIONS.get(name) if cls is TrainConfig else None
        if sub is not None:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: '{name}' must be a mapping, got {value!r}")
            value = _build(sub, value, f"{where}.{name}")
        elif isinstance(value, list) and name == "betas":
            value = tuple(value)
        elif value is not None and str(known[name].type).startswith(("float", "int")):
            value = as_number(value, f"{where}.{name}")
            if str(known[name].type).startswith("int") and isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"{where}.{name}: expected an integer, got {value!r}")
                value = int(value)
        elif str(known[name].type) == "bool" and not isinstance(value, bool):
            raise ValueError(f"{where}.{name}: expected true or false, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "mask": MaskConfig, "optim": OptimConfig, "lora": LoraConfig, "run": RunConfig}


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def maybe_number(value: Any) -> Any:
    """A string that spells a number becomes that int/float; anything else is returned unchanged.

    YAML 1.1 reads "1e-3" (no dot) as a string; the user meant the number.
    """
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return int(value) if value.strip().lstrip("+-").isdigit() else float(value)
    return value


def as_number(value: Any, where: str) -> int | float:
    """``value`` as a number (see ``maybe_number``), or a ValueError naming ``where``."""
    value = maybe_number(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return value


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
    cfg = _build(TrainConfig, values, where)
    cfg.loss_hparams()  # validate names early
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML config (or defaults when ``path`` is None) and apply ``key=value`` overrides."""
    values = read_yaml_mapping(path, "config") if path is not None else {}
    return from_dict(apply_overrides(values, overrides or []), where=str(path or "config"))
