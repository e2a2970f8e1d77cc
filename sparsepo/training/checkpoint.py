"""Training checkpoints: a plain Hugging Face policy folder plus the state needed to resume exactly.

Layout of a checkpoint directory::

    policy/            save_pretrained model (LoRA merged) + tokenizer: loads in transformers, vLLM, lm-eval
    adapter/           the LoRA adapter (LoRA runs only; resuming needs it unmerged)
    masks.pt           mask-network state dict (learned-mask methods)
    train_state.pt     optimizer (unsharded runs), scheduler, step, per-rank RNG states
    sharded/           run.strategy=fsdp: every rank's shard of model + optimizer state (torch.distributed.checkpoint)
    config.yaml        the full training config
    metrics.jsonl      every metrics dict reported up to this step
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from torch import nn

from sparsepo.io import read_jsonl
from sparsepo.training.forward import unwrap_model
from sparsepo.training.models import merge_into_full_base

if TYPE_CHECKING:
    from sparsepo.config.schema import TrainConfig

log = logging.getLogger("sparsepo.training.checkpoint")

POLICY_DIR, ADAPTER_DIR, MASKS_FILE, STATE_FILE, HISTORY_FILE = "policy", "adapter", "masks.pt", "train_state.pt", "metrics.jsonl"


STAGING_PREFIX = "sparsepo-ckpt-"


def staging_dir(step: int, root: str | None = None) -> tempfile.TemporaryDirectory:
    """A temporary folder to write one checkpoint into before ``ray.train.report`` persists it.

    Its name carries this host's name and this process's pid so that ``remove_stale_staging`` can tell a
    killed worker's leftover from a live one's (hostnames keep containers that share a /tmp apart).
    """
    return tempfile.TemporaryDirectory(prefix=f"{_host_prefix()}{os.getpid()}-{step}-", dir=root)


def remove_stale_staging(root: str | None = None) -> list[str]:
    """Delete this host's staging folders whose process is gone; returns their paths.

    A worker that is SIGKILLed (a failed node, an ASHA-stopped or driver-killed trial) cannot clean up
    its staging folder, a full checkpoint (1.6 GB for SmolLM2 with optimizer state), so the next run does.
    """
    mine = _host_prefix()
    removed = []
    for entry in os.scandir(root or tempfile.gettempdir()):
        if not (entry.name.startswith(mine) and entry.is_dir(follow_symlinks=False)):
            continue
        pid = entry.name[len(mine) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _host_prefix() -> str:
    return f"{STAGING_PREFIX}{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global RNGs (the ones :func:`rng_state` saves) seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_policy(policy: nn.Module, tokenizer: Any, out: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write the policy as a plain HF folder; a LoRA policy is saved merged (a copy, training state untouched).
    ``state_dict``: the weights to write instead of the policy's own (a sharded policy's gathered ones)."""
    if hasattr(policy, "merge_and_unload"):
        (out.parent / ADAPTER_DIR).mkdir(parents=True, exist_ok=True)
        policy.save_pretrained(out.parent / ADAPTER_DIR)
        if getattr(policy, "is_loaded_in_4bit", False):
            merged = merge_into_full_base(policy, out.parent / ADAPTER_DIR)
        else:
            merged = copy.deepcopy(policy).merge_and_unload()
    else:
        merged = unwrap_model(policy)
    merged.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(out)


def save_checkpoint(
    path: Path,
    *,
    policy: nn.Module,
    tokenizer: Any,
    masks: nn.Module | None,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    step: int,
    rng_states: list[dict[str, Any]],
    config: dict[str, Any],
    history: list[dict[str, float]] | None = None,
    policy_state: dict[str, torch.Tensor] | None = None,
    masks_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """``optimizer`` None: its state is saved elsewhere (``sharded/``); ``policy_state`` / ``masks_state``:
    gathered weights to write instead of the modules' own (sharded ones)."""
    path.mkdir(parents=True, exist_ok=True)
    save_policy(policy, tokenizer, path / POLICY_DIR, policy_state)
    if masks is not None:
        torch.save(masks_state if masks_state is not None else masks.state_dict(), path / MASKS_FILE)
    state = {"scheduler": scheduler.state_dict(), "step": step, "rng": rng_states}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    torch.save(state, path / STATE_FILE)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (path / HISTORY_FILE).write_text("".join(json.dumps(m) + "\n" for m in history or []))
    return path


def complete_checkpoints(train_run: str) -> list[tuple[int, str]]:
    """``(step, path)`` of every complete checkpoint of a Train run folder (local path or URI), by step.

    Complete means registered by Ray Train in the run's ``checkpoint_manager_snapshot.json``, which it writes only
    after a checkpoint's upload has finished; Ray restores from the same list. A ``checkpoint_*`` folder left by a
    worker or node killed while writing it is never registered, so it is never returned, even where its metrics
    file made it to storage. A folder without a snapshot (no Train run, or none checkpointed yet) gives ``[]``.
    """
    from ray.train import Result

    try:
        result = Result.from_path(train_run)
    except RuntimeError:  # no such folder, or no snapshot in it
        return []
    scheme = train_run.split("://", 1)[0] + "://" if "://" in train_run else ""  # Ray's paths are inside the filesystem
    return sorted((int(metrics["step"]), scheme + ckpt.path) for ckpt, metrics in result.best_checkpoints)


def policy_folder(source: str) -> str:
    """The model folder ``source`` names: a Train run folder gives its last complete checkpoint's policy, a
    checkpoint folder its policy; a model folder, URI or hub name is returned as it is."""
    local = "://" not in source
    if local and not Path(source).is_dir():
        return source
    policy = last_policy(source)
    if policy:
        return policy
    if local and (Path(source) / POLICY_DIR / "config.json").exists():
        return str(Path(source) / POLICY_DIR)
    return source


def last_policy(train_run: str) -> str | None:
    """The ``policy`` folder of the last complete checkpoint of a Train run folder (path or URI); None if none."""
    found = complete_checkpoints(train_run)
    return f"{found[-1][1]}/{POLICY_DIR}" if found else None


def load_history(path: Path) -> list[dict[str, float]]:
    f = path / HISTORY_FILE
    return read_jsonl(f) if f.exists() else []


def load_train_state(path: Path) -> dict[str, Any]:
    # The state holds numpy RNG tuples and optimizer tensors written by us; weights_only=False is needed for them.
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)


def chaos_kill(cfg: TrainConfig, rank: int) -> None:
    """Fault-tolerance drill of resuming from checkpoints: SIGKILL this worker once at ``run.chaos_kill_at_step``
    (a marker file in storage says it was done)."""
    marker = Path(cfg.run.storage_path).expanduser() / f".chaos-{cfg.run.name}-{cfg.run.chaos_kill_at_step}"
    if rank == 0 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        log.warning(f"[sparsepo] chaos: killing worker pid {os.getpid()} at step {cfg.run.chaos_kill_at_step}")
        os.kill(os.getpid(), signal.SIGKILL)
