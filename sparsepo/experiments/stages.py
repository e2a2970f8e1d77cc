"""What every experiment's stages share: cache keys, where artifacts live, the SFT stage and the method sweep.

An experiment (``sparsepo.experiments.<name>``) is a config dataclass plus stage functions; each stage caches what
it makes under a key that hashes everything that determines it (:func:`cache_key`, with :func:`model_fingerprint`
for models), so a rerun or a ``--resume`` reuses it and any change of input recomputes it. Driver-side artifacts
live in the storage folder, or in ``$SPARSEPO_CACHE`` when the storage is remote (:func:`local_cache`); files the Train
workers read are copied to a remote storage (:func:`publish`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparsepo.io import cache_key, is_remote, remote_listing, resolve_storage, upload_dir, write_text

_HASHED_FILE_BYTES = 1 << 20  # files up to this size (config, tokenizer) are hashed; larger ones by size + mtime
Log = Callable[[str], Any]


def model_fingerprint(name: str) -> dict[str, Any]:
    """What identifies a model for caching: its resolved name or folder and, for a local folder, every file's
    relative path with a content hash (small files) or size and modification time (weights), so a checkpoint
    retrained at the same path gets a new key. A storage URI: the URI and its listing (sizes and modification
    times; nothing is downloaded)."""
    from sparsepo.assets import resolve_model

    if is_remote(name):
        return {"uri": name.rstrip("/"), "files": remote_listing(name)}
    resolved = resolve_model(name)
    folder = Path(resolved).expanduser()
    if not folder.is_dir():
        return {"name": resolved}  # a hub name
    files: dict[str, Any] = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            st = f.stat()
            small = st.st_size <= _HASHED_FILE_BYTES
            files[f.relative_to(folder).as_posix()] = (
                hashlib.sha1(f.read_bytes()).hexdigest() if small else [st.st_size, st.st_mtime_ns]
            )
    return {"path": str(folder.resolve()), "files": files}


def output_dir(storage_path: str, name: str) -> Path:
    """Where an experiment's report and tables go: ``<storage>/<name>`` (``./<name>`` for a remote storage)."""
    return Path(name) if is_remote(storage_path) else Path(resolve_storage(storage_path)) / name


def local_cache(storage_path: str, what: str) -> Path:
    """Driver-side cache folder ``what``: in the storage folder, or the asset cache (``$SPARSEPO_CACHE``, default
    ``~/.cache/sparsepo``) when the storage is remote."""
    if is_remote(storage_path):
        from sparsepo.assets import cache_dir

        return cache_dir() / what  # $SPARSEPO_CACHE, as every other cache of the platform
    return Path(resolve_storage(storage_path)) / what


def publish(storage_path: str, name: str, path: str | Path) -> str:
    """The path the Train workers read ``path`` (a file, or a folder such as a model) from: itself, or a copy
    uploaded to ``<storage>/<name>/<its name>`` under a remote storage (other nodes; folders are loaded through
    ``sparsepo.io.local_copy``)."""
    if not is_remote(storage_path):
        return str(path)
    remote = f"{resolve_storage(storage_path)}/{name}/{Path(path).name}"
    if Path(path).is_dir():
        upload_dir(path, remote)
    else:  # write_text creates the remote parent folders, which copy_files does not for a single file
        write_text(remote, Path(path).read_text())
    return remote


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as JSON lines, written atomically (an interrupted run leaves no half-written cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return path


def train_sft(
    rows: list[dict[str, Any]],
    *,
    model: str,
    storage_path: str,
    steps: int,
    lr: float,
    train: dict[str, Any],
    tag: str,
    log: Log = print,
) -> str:
    """The SFT stage: ``steps`` optimizer steps of the ``sft`` objective on ``rows`` (``prompt``/``completion`` or
    ``messages``), cached by model, rows and settings. ``train`` holds the other TrainConfig values (``data``,
    ``optim``, ``run``, ``lora`` sections; data path, steps and lr are set here). Returns the policy folder: a
    local path, or with a remote ``storage_path`` a URI under ``<storage>/sft/`` that every node can load."""
    key = cache_key(model=model_fingerprint(model), rows=rows, steps=steps, lr=lr, train=train)
    name = f"{tag}-sft-{key}"

    def data() -> str:
        return publish(storage_path, f"sft/{name}", write_rows(local_cache(storage_path, "sft") / name / "sft.jsonl", rows))

    return _cached_fit("sft", name, data, {"method": "sft", "model": {"name": model}}, storage_path=storage_path,
                       steps=steps, lr=lr, train=train, tag=tag, log=log, what=f"{len(rows)} examples")


def needs_oracle(methods: Any) -> bool:
    """Whether any of ``methods`` weighs tokens by an oracle model (``sparsepo.objectives.token_weights``)."""
    from sparsepo.objectives.losses import LOSSES

    return any(m in LOSSES and LOSSES[m].needs_oracle for m in methods)


def train_oracle(
    data_path: str,
    *,
    model: str,
    storage_path: str,
    steps: int,
    lr: float,
    train: dict[str, Any],
    tag: str,
    beta: float = 0.1,
    log: Log = print,
) -> str:
    """The oracle stage of the zoo's weightings (TIS-DPO, cDPO, TGDPO, SePO): DPO (``beta``) for ``steps`` steps
    on the experiment's own pairs ``data_path`` from ``model``, cached by model, pairs and settings like
    :func:`train_sft`. Returns the policy folder (a URI under ``<storage>/oracle/`` with a remote storage)."""
    key = cache_key(model=model_fingerprint(model), data=data_path, steps=steps, lr=lr, beta=beta, train=train)
    fixed = {"method": "dpo", "loss": {"beta": beta}, "model": {"name": model}}
    return _cached_fit("oracle", f"{tag}-oracle-{key}", lambda: data_path, fixed, storage_path=storage_path,
                       steps=steps, lr=lr, train=train, tag=tag, log=log, what="the pairs")


def _cached_fit(kind: str, name: str, data: Callable[[], str], fixed: dict[str, Any], *, storage_path: str,
                steps: int, lr: float, train: dict[str, Any], tag: str, log: Log, what: str) -> str:
    """Train ``fixed`` (method, model, loss) with ``train``'s other sections on ``data()`` once under
    ``<storage>/<kind>/<name>``; the policy folder of its last complete checkpoint, reused when it exists."""
    from sparsepo.config.schema import from_dict
    from sparsepo.training.checkpoint import last_policy
    from sparsepo.training.train import fit

    run_root = f"{resolve_storage(storage_path)}/{kind}/{name}"  # where the Train run writes (maybe remote)
    done = last_policy(f"{run_root}/train")  # the run's own folder: run.name is "train"
    if done:
        log(f"[{tag}] {kind}: cached {done}")
        return done
    values = {**train, **fixed}
    values["data"] = {**train.get("data", {}), "path": data()}
    values["optim"] = {"warmup_ratio": 0.1, **train.get("optim", {}), "lr": lr, "max_steps": steps}
    values["run"] = {**train.get("run", {}), "name": "train", "storage_path": run_root, "keep_checkpoints": 1,
                     "eval_every": 0, "evaluator": None, "evaluator_args": {}}
    t = time.perf_counter()
    fit(from_dict(values, where=f"{tag} {kind}"))
    policy = last_policy(f"{run_root}/train")
    if policy is None:
        raise RuntimeError(f"[{tag}] {kind}: the run in {run_root}/train finished without a checkpoint")
    log(f"[{tag}] {kind}: {steps} steps on {what} ({time.perf_counter() - t:.0f}s): {policy}")
    return policy


def last_evaluations(results: Any, axis: str, variants: list[str], metric: str, tag: str,
                     log: Log = print) -> dict[str, dict[str, float]]:
    """``{variant: its last reported eval/* metrics (prefix removed)}`` from a sweep's results frame; variants
    without an evaluation of ``metric`` (failed trials) are left out with a warning."""
    rows: dict[str, dict[str, float]] = {}
    for variant in variants:
        done = results[(results[axis] == variant) & results[metric].notna()] if metric in results else results[:0]
        if done.empty:
            log(f"[{tag}] warning: trial {variant} has no evaluation (failed?); left out of the table")
            continue
        last = done.iloc[-1]
        rows[variant] = {k.removeprefix("eval/"): float(v) for k, v in last.items()
                         if k.startswith("eval/") and v == v}  # v == v: not NaN
    log(f"[{tag}] sweep: {len(rows)} of {len(variants)} trials evaluated")
    return rows


AXIS = "method_point"  # a method sweep's one axis: a variant per method
DRIVER_CPUS = 0.01  # a trial's driver only waits on its Train workers: on a CPU machine the workers get the rest


def method_sweep_values(cfg: Any, model: str, data_path: str, *, evaluator: str | None = None,
                        evaluator_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """TrainConfig values every trial of a method sweep shares, from an experiment config's common fields
    (``methods``, ``lr``, ``steps``, ``batch_size``, ``grad_accum``, ``max_length``, ``max_prompt_length``,
    ``name``, ``storage_path``, ``num_workers``, ``use_gpu``, ``seed``): each trial saves (and runs
    ``evaluator``) once, at its last step, and keeps that checkpoint only."""
    last = cfg.steps or 10**9  # None: one epoch; the end of training saves
    values = {
        "method": cfg.methods[0],
        "model": {"name": model},
        "data": {"path": data_path, "max_length": cfg.max_length, "max_prompt_length": cfg.max_prompt_length,
                 "truncate_prompt": True},
        "optim": {"lr": cfg.lr, "max_steps": cfg.steps, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
                  "warmup_ratio": 0.1},
        "run": {"name": cfg.name, "storage_path": resolve_storage(cfg.storage_path), "num_workers": cfg.num_workers,
                "use_gpu": cfg.use_gpu, "cpus_per_worker": 1.0 if cfg.use_gpu else 1.0 - DRIVER_CPUS,
                "seed": cfg.seed, "log_every": 1, "save_every": last, "keep_checkpoints": 1,
                "eval_every": last if evaluator else 0, "evaluator": evaluator, "evaluator_args": evaluator_args or {}},
    }
    if needs_oracle(cfg.methods):  # the zoo's oracle: DPO on the same pairs, as long as a trial
        values["model"]["oracle"] = train_oracle(data_path, model=model, storage_path=cfg.storage_path,
                                                 steps=cfg.steps or 1, lr=cfg.lr, tag=cfg.name,
                                                 train={k: values[k] for k in ("data", "optim", "run")})
    return values


def run_method_sweep(cfg: Any, base: Any, metric: str, mode: str, tag: str, log: Log = print) -> Any:
    """One Ray Tune trial per method of ``cfg.methods`` (beta ``cfg.beta``; SimPO's ``cfg.simpo_beta`` where the
    config has one) from the TrainConfig ``base``, under ``<storage>/<name>-sweep`` (``cfg.resume`` continues
    it); returns the results frame (:func:`sparsepo.sweeps.tuning.results_frame`, variant names in :data:`AXIS`)."""
    from sparsepo.objectives.losses import simpo_scale
    from sparsepo.sweeps.tuning import results_frame, run_sweep

    simpo_beta = getattr(cfg, "simpo_beta", cfg.beta)
    points = {m: {"method": m, "loss.beta": simpo_beta if simpo_scale(m) else cfg.beta} for m in cfg.methods}
    log(f"[{tag}] sweep: {len(points)} trials: {', '.join(points)}")
    t = time.perf_counter()
    grid = run_sweep(base, {AXIS: {"variants": points}}, search="grid", metric=metric, mode=mode,
                     max_concurrent_trials=cfg.max_concurrent_trials, driver_cpus=DRIVER_CPUS,
                     storage_path=resolve_storage(cfg.storage_path), name=f"{cfg.name}-sweep", resume=cfg.resume,
                     tensorboard=False)
    log(f"[{tag}] sweep: done ({time.perf_counter() - t:.0f}s)")
    return results_frame(grid)


def cached_baseline(cfg: Any, model: str, args: dict[str, Any], tag: str,
                    evaluate: Callable[[Any], dict[str, float]], log: Log = print) -> tuple[dict[str, float], bool]:
    """The baseline stage: ``evaluate(generator)`` on the SFT ``model`` (a ``cfg.backend`` generator, closed
    after), cached as JSON in ``<cache>/evals`` by the model's files, backend and evaluation ``args``.
    Returns ``(metrics, cached)``."""
    from sparsepo.generation import make_generator

    key = cache_key(model=model_fingerprint(model), backend=cfg.backend, **args)
    path = local_cache(cfg.storage_path, "evals") / f"{tag}-eval-{key}.json"
    if path.exists():
        log(f"[{tag}] baseline: cached {path}")
        return json.loads(path.read_text()), True
    generator = make_generator(cfg.backend, model)
    try:
        metrics = evaluate(generator)
    finally:
        if hasattr(generator, "close"):
            generator.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return metrics, False
