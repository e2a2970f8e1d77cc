"""Code preference pairs as in the paper (appendix B.5): execute sampled solutions, pair passing with failing.

The SFT model samples ``n`` solutions per training problem; each runs in the sandbox (``sparsepo.evaluation.sandbox``)
against the problem's tests (through ``sparsepo.evaluation.code.evaluate_code``, which also gives the problem's
pass@k). Every distinct passing solution is paired with a failing solution of the same problem, drawn at random
(seeded); problems with no passing or no failing solution give no pairs. Blank solutions are left out: the
preference data loader rejects empty responses. Pairs are cached in a JSONL file named by a hash of everything
that determines them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sparsepo.evaluation.code import CodeEvalResult, CodeProblem, evaluate_code
from sparsepo.evaluation.sandbox import SandboxConfig
from sparsepo.experiments.stages import cache_key, model_fingerprint, write_rows
from sparsepo.generation import Generator, SamplingConfig
from sparsepo.io import read_jsonl


def pair_solutions(
    problems: Sequence[CodeProblem], samples: Sequence[dict[str, Any]], seed: int = 0
) -> list[dict[str, Any]]:
    """TRL-style rows ``prompt``/``chosen``/``rejected`` (+ ``task_id``) from executed samples.

    ``samples``: records with ``task_id``, ``completion`` and ``passed`` (``CodeEvalResult.samples``).
    Each distinct passing completion of a problem gets one random failing completion of that problem.
    """
    by_task: dict[str, tuple[list[str], list[str]]] = {p.task_id: ([], []) for p in problems}
    for s in samples:
        if s["task_id"] not in by_task:
            raise ValueError(f"sample of task {s['task_id']!r}, which is not among the {len(by_task)} problems")
        if s["completion"].strip():
            passing, failing = by_task[s["task_id"]]
            (passing if s["passed"] else failing).append(s["completion"])
    rng = random.Random(seed)
    rows = []
    for p in problems:  # problem order, then sample order: deterministic for a seed
        passing, failing = (list(dict.fromkeys(x)) for x in by_task[p.task_id])
        for good in passing if failing else []:
            rows.append({"prompt": p.prompt, "chosen": good, "rejected": rng.choice(failing), "task_id": p.task_id})
    return rows


def sample_code_pairs(
    generator: Generator,
    problems: Sequence[CodeProblem],
    sampling: SamplingConfig,
    *,
    sandbox: SandboxConfig | None = None,
    workers: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], CodeEvalResult]:
    """Sample ``sampling.n`` solutions per problem, execute them, pair them: ``(rows, execution result)``."""
    result = evaluate_code(generator, problems, sampling, ks=(1,), sandbox=sandbox, workers=workers, progress=progress)
    return pair_solutions(problems, result.samples, seed), result


def pairs_summary(problems: Sequence[CodeProblem], result: CodeEvalResult, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many problems had passing / failing samples and how many pairs came out (for the run report)."""
    c = dict(zip(result.table["task_id"], result.table["c"], strict=True))
    n = result.summary["n"]
    return {
        "problems": len(problems),
        "samples_per_problem": n,
        "problems_with_a_pass": sum(v > 0 for v in c.values()),
        "problems_with_pass_and_fail": sum(0 < v < n for v in c.values()),
        "pairs": len(rows),
        "pass@1": result.summary["pass@1"],
    }


def cached_code_pairs(
    generator: Generator,
    problems: Sequence[CodeProblem],
    sampling: SamplingConfig,
    *,
    cache_dir: str | Path,
    model: str,
    seed: int = 0,
    sandbox: SandboxConfig | None = None,
    workers: int | None = None,
) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """``sample_code_pairs`` cached as ``code-pairs-<key>.jsonl`` (+ ``.summary.json``); the key hashes the
    model, the problems (ids, prompts and tests), the sampling and the seed. Returns ``(path, rows, summary)``."""
    key = cache_key(model=model_fingerprint(model), seed=seed, sampling=asdict(sampling),
                    problems=[[p.task_id, p.prompt, p.test, list(p.stop)] for p in problems])
    path = Path(cache_dir) / f"code-pairs-{key}.jsonl"
    meta = path.with_suffix(".summary.json")
    if path.exists() and meta.exists():
        return path, read_jsonl(path), json.loads(meta.read_text())
    rows, result = sample_code_pairs(generator, problems, sampling, sandbox=sandbox, workers=workers, seed=seed)
    summary = pairs_summary(problems, result, rows)
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(summary, indent=1))
    write_rows(path, rows)  # last: an interrupted run leaves no cache that looks complete
    return path, rows, summary
