"""The leaderboard stage of the dialogue experiment: each model's final checkpoint through the Open LLM Leaderboard
suite (:func:`sparsepo.evaluation.openllm.run_openllm`), one Ray task per model, then paper Table 1.

Why after the sweep and not in an in-training evaluator: lm-eval loads a model by path and, with the vLLM
backend, starts its own engine that wants the whole accelerator; inside a Train worker the policy, the reference
and the optimizer state already hold it. A Ray task per final checkpoint runs in a fresh process with its own GPU
(``use_gpu``), loads the checkpoint like any released model, and the SFT model goes through the very same task,
so every row of the table is measured the same way. Results are cached per model (by its files) and settings.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sparsepo.experiments.stages import Log, cache_key, model_fingerprint


@dataclass(frozen=True)
class LeaderboardSpec:
    """How every model is evaluated: lm-eval ``tasks`` (``include_path``: a folder of local task YAMLs, or
    ``None`` for lm-eval's own), the Table 1 ``suite`` naming the columns, at most ``limit`` documents per
    subtask (``None``: all), the tokenizer's chat template on prompts or not, HF or vLLM backend."""

    tasks: tuple[str, ...]
    suite: str
    include_path: str | None = None
    limit: int | None = None
    chat_template: bool = True
    backend: str = "hf"
    batch_size: int | str = 1
    max_length: int | None = None
    extra_model_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 1234


def _evaluate(model: str, spec: dict[str, Any]) -> dict[str, Any]:
    """lm-eval results (with samples) of ``model`` (a local folder or URI of a checkpoint, or a model name)."""
    from sparsepo.evaluation.openllm import load_results, run_openllm

    s = LeaderboardSpec(**spec)
    with tempfile.TemporaryDirectory() as out:
        kwargs = {"backend": s.backend, "tasks": s.tasks, "apply_chat_template": s.chat_template,
                  "batch_size": s.batch_size, "limit": s.limit, "include_path": s.include_path, "output_dir": out,
                  "suite": s.suite, "max_length": s.max_length, "extra_model_args": s.extra_model_args or None,
                  "seed": s.seed, "overwrite": True}
        run_openllm(model, **kwargs)  # a URI: downloaded to this node's copy (sparsepo.io.local_copy)
        return load_results(out)


def evaluate_models(models: dict[str, str], spec: LeaderboardSpec, cache: Path, *, use_gpu: bool = False,
                    log: Log = print) -> dict[str, dict[str, Any]]:
    """``{label: lm-eval results}`` of every ``label -> model`` (folder, checkpoint URI or name), each evaluated
    in its own Ray task (1 CPU, or 1 GPU with ``use_gpu``) unless cached in ``cache``. A failed evaluation is
    left out with a warning (and retried by a rerun); raises when all failed."""
    import ray

    from sparsepo.evaluation.openllm import load_results, save_results

    todo, results = {}, {}
    for label, model in models.items():
        folder = cache / f"openllm-{cache_key(model=model_fingerprint(model), spec=asdict(spec))}"
        if (folder / "results.json").exists():
            log(f"[dialogue] leaderboard: {label}: cached {folder}")
            results[label] = load_results(folder)
        else:
            todo[label] = (model, folder)
    if todo:
        t = time.perf_counter()
        task = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0)(_evaluate)
        refs = {label: task.remote(model, asdict(spec)) for label, (model, _) in todo.items()}
        for label, ref in refs.items():
            try:
                results[label] = ray.get(ref)
            except ray.exceptions.RayTaskError as err:  # one broken checkpoint must not lose the other rows
                log(f"[dialogue] warning: leaderboard of {label} failed; left out of the table: {err}")
                continue
            save_results(results[label], todo[label][1], overwrite=True)
        log(f"[dialogue] leaderboard: {', '.join(todo)} evaluated ({time.perf_counter() - t:.0f}s)")
    if not results:
        raise RuntimeError(f"every leaderboard evaluation failed: {', '.join(models)}")
    return {label: results[label] for label in models if label in results}


def table(results: dict[str, dict[str, Any]], suite: str, seed: int = 0) -> pd.DataFrame:
    """Paper Table 1: one row per system in ``results`` order (the SFT model first), normalised scores (0-100),
    the suite's columns and ``Average``, then each one's 95% bootstrap interval over documents
    (``<column> CI low`` / ``CI high``, :func:`sparsepo.evaluation.openllm_intervals.column_intervals`); index name
    ``Method``."""
    from sparsepo.evaluation.openllm_intervals import column_intervals
    from sparsepo.evaluation.openllm_scores import table1
    from sparsepo.evaluation.report import CI_HIGH, CI_LOW

    df = table1(results, suite)
    intervals = {name: column_intervals(res, suite, seed=seed) for name, res in results.items()}
    for col in list(df.columns):
        df[col + CI_LOW] = [intervals[name][col][0] for name in df.index]
        df[col + CI_HIGH] = [intervals[name][col][1] for name in df.index]
    df.index.name = "Method"
    return df
