"""Checks run on the driver before Ray starts: everything a training run needs that can fail cheaply.

A run that would fail on a worker (a misspelt model path, an offline hub name, a bad data row, too few pairs
for the batch, a run name that already holds a finished run) fails here instead, in seconds, with one message
that names the file, row and field or the config key.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from sparsepo.config.schema import ConfigError, TrainConfig, train_processes
from sparsepo.io import is_remote, resolve_storage

log = logging.getLogger("sparsepo.config.preflight")


@dataclass(frozen=True)
class Preflight:
    """What the checks found: the run's folder (or URI) and the data report line."""

    run_dir: str
    data_report: str
    pairs: int


def run_dir(cfg: TrainConfig) -> str:
    """Where Ray Train keeps run ``cfg.run.name``: ``<storage>/<name>``."""
    return f"{resolve_storage(cfg.run.storage_path)}/{cfg.run.name}"


def run_exists(path: str) -> bool:
    """True if ``path`` (local or remote) is a folder with anything in it."""
    if is_remote(path):
        import pyarrow.fs

        fs, root = pyarrow.fs.FileSystem.from_uri(path)
        return bool(fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True)))
    p = Path(path)
    return p.is_dir() and any(p.iterdir())


def check_run_name(cfg: TrainConfig) -> str:
    """The run folder; an existing one is an error unless ``run.resume`` asks to continue it (said loudly)."""
    path = run_dir(cfg)
    exists = run_exists(path)
    if exists and not cfg.run.resume:
        raise ConfigError(
            f"run.name: a run named {cfg.run.name!r} already exists at {path}; pass run.resume=true to continue "
            "it, or choose another run.name (leave it unset for a fresh <method>-<date>-<time> name)"
        )
    if cfg.run.resume:
        if not exists:
            raise ConfigError(f"run.resume: there is no run {cfg.run.name!r} to continue at {path}")
        log.warning(f"[sparsepo] RESUMING run {cfg.run.name!r} from its latest checkpoint in {path}")
    return path


def check_models(cfg: TrainConfig):  # noqa: ANN201 - a tokenizer
    """Policy, reference and oracle resolve to a tokenizer and a model config (local folder, alias, or reachable hub)."""
    from transformers import AutoConfig

    from sparsepo.training.checkpoint import policy_folder
    from sparsepo.training.models import load_tokenizer, model_source

    tokenizer = load_tokenizer(cfg.model.name)
    gguf = bool(cfg.model.gguf_file)  # the GGUF file's folder has no config.json; the oracle is a trained folder
    for key, name, skip in (("model.name", cfg.model.name, gguf), ("model.ref", cfg.model.ref, gguf),
                            ("model.oracle", cfg.model.oracle, False)):
        if name is None or skip:
            continue
        if key == "model.oracle":
            name = policy_folder(name)  # a Train run or checkpoint folder names its policy
        try:
            AutoConfig.from_pretrained(model_source(name, ("config.json",)))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{key}: cannot load {name!r}: {err}") from None
    return tokenizer


def check_quantization(cfg: TrainConfig) -> None:
    """``lora.quantize`` needs bitsandbytes on this machine (its CPU backend included)."""
    if cfg.lora.quantize != "none" and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"lora.quantize: {cfg.lora.quantize!r} needs bitsandbytes: pip install 'sparsepo[qlora]'")


def check_evaluator(cfg: TrainConfig) -> None:
    """``run.evaluator`` names an importable ``module:factory``."""
    spec = cfg.run.evaluator
    if not spec:
        return
    module, sep, name = spec.partition(":")
    if not sep or not name or importlib.util.find_spec(module) is None:
        raise ConfigError(f"run.evaluator: {spec!r} is not an importable 'module:factory'")


def preflight(cfg: TrainConfig, check_name: bool = True) -> Preflight:
    """Every cheap check of a training run, in the order a user would fix them. ``check_name``: also the run
    folder (a sweep's base config names no run: each trial gets its own)."""
    from sparsepo.data.preference import load_preference_data
    from sparsepo.training import sft

    path = check_run_name(cfg) if check_name else ""
    check_evaluator(cfg)
    check_quantization(cfg)
    tokenizer = check_models(cfg)
    if not cfg.data.path:
        raise ConfigError("data.path: no preference data given (a .jsonl/.json/.parquet/.csv file, hub name or offline:<name>)")
    load = sft.load_sft_data if sft.is_sequence_objective(cfg.method) else load_preference_data
    dataset, report = load(cfg.data, tokenizer)
    processes = train_processes(cfg.run.num_workers)  # local mode (0 workers) trains in one
    if len(dataset) < cfg.optim.batch_size * processes:
        raise ConfigError(
            f"optim.batch_size: {len(dataset)} valid rows in {cfg.data.path} are too few for batch_size="
            f"{cfg.optim.batch_size} x {processes} training process(es)"
        )
    return Preflight(run_dir=path, data_report=str(report), pairs=len(dataset))
