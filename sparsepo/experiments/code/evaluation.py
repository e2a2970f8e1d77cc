"""pass@k of a policy on held-out code problems, with the paper's sampling, in the layout of paper Table 2.

Paper sampling (Codex / BigCode-harness convention): ``n`` = 100 samples per problem, top-p 0.95, pass@1 from
samples at temperature 0.2 and pass@10 / pass@100 from samples at temperature 0.8 (:data:`PAPER_PLAN`).
A plan is a list of ``(temperature, ks)``; each temperature is one ``evaluate_code`` pass over every suite.
Metrics are named ``<suite>/pass@<k>`` (fractions in [0, 1]; the table prints percentages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import nn

from sparsepo.evaluation.code import CodeProblem, evaluate_code, load_humaneval, load_mbpp
from sparsepo.evaluation.report import CI_HIGH, CI_LOW
from sparsepo.evaluation.sandbox import SandboxConfig
from sparsepo.evaluation.stats import bootstrap_ci
from sparsepo.generation import Generator, SamplingConfig

SUITES = ("humaneval", "mbpp")
TABLE_KS = (1, 10, 100)
PAPER_PLAN: tuple[tuple[float, tuple[int, ...]], ...] = ((0.2, (1,)), (0.8, (10, 100)))


def load_suite(spec: dict[str, Any]) -> list[CodeProblem]:
    """Problems of one suite spec: ``{"suite": "humaneval"|"mbpp", "source": file or hub name (None: HumanEval's
    shipped file / hub ``mbpp``), "split": MBPP split, "task_ids": optional subset, in that order}``."""
    suite = spec.get("suite")
    if suite == "humaneval":
        problems = load_humaneval(spec.get("source"))
    elif suite == "mbpp":
        problems = load_mbpp(spec.get("source") or "mbpp", spec.get("split", "test"))
    else:
        raise ValueError(f"code suite must be one of {SUITES}, got {suite!r}")
    ids = spec.get("task_ids")
    if ids is None:
        return problems
    by_id = {p.task_id: p for p in problems}
    missing = [t for t in ids if t not in by_id]
    if missing:
        raise ValueError(f"{suite}: unknown task_ids {missing[:5]} (of {len(missing)})")
    return [by_id[t] for t in ids]


def pass_at_k(
    generator: Generator,
    suites: dict[str, list[CodeProblem]],
    plan: Sequence[tuple[float, Sequence[int]]],
    *,
    n: int,
    top_p: float = 0.95,
    max_new_tokens: int = 512,
    seed: int = 0,
    sandbox: SandboxConfig | None = None,
    n_resamples: int = 1000,
) -> dict[str, float]:
    """``{"<suite>/pass@<k>": mean over problems}`` for every suite and every k of the plan (k <= n), with its
    95% percentile-bootstrap CI over problems as ``.../ci_low`` and ``.../ci_high``."""
    out: dict[str, float] = {}
    for temperature, ks in plan:
        sampling = SamplingConfig(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
        for name, problems in suites.items():
            result = evaluate_code(generator, problems, sampling, ks=ks, sandbox=sandbox, progress=False)
            for k in result.summary["ks"]:
                ci = bootstrap_ci(result.table[f"pass@{k}"].to_numpy(dtype=float), n_resamples=n_resamples, seed=seed)
                key = f"{name}/pass@{k}"
                out.update({key: result.summary[f"pass@{k}"], f"{key}/ci_low": ci.low, f"{key}/ci_high": ci.high})
    return out


class CodeEvaluator:
    """In-training evaluator (``run.evaluator="sparsepo.experiments.code.evaluation:CodeEvaluator"``): pass@k of
    the in-memory policy (HF ``generate``) on every suite, reported as ``eval/<suite>/pass@<k>``."""

    def __init__(self, suites: dict[str, dict[str, Any]], plan: Sequence[Sequence[Any]], n: int, top_p: float = 0.95,
                 max_new_tokens: int = 512, seed: int = 0, batch_size: int = 16, timeout_s: float = 3.0,
                 n_resamples: int = 1000):
        self.suites = {name: load_suite(spec) for name, spec in suites.items()}
        self.plan = [(float(t), tuple(int(k) for k in ks)) for t, ks in plan]
        self.kw = {"n": n, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed,
                   "sandbox": SandboxConfig(timeout_s=timeout_s), "n_resamples": n_resamples}
        self.batch_size = batch_size

    def __call__(self, policy: nn.Module, ref: Any, tokenizer: Any, step: int) -> dict[str, float]:
        from sparsepo.generation.hf import HFGenerator

        was_training = policy.training
        policy.eval()
        try:
            gen = HFGenerator.from_model(policy, tokenizer, batch_size=self.batch_size)
            metrics = pass_at_k(gen, self.suites, self.plan, **self.kw)
        finally:
            policy.train(was_training)
        return {f"eval/{k}": v for k, v in metrics.items()}


def table2(rows: dict[str, dict[str, float]], suites: Sequence[str] = SUITES, ks: Sequence[int] = TABLE_KS) -> pd.DataFrame:
    """Paper Table 2: one row per method, columns ``HumanEval pass@1 ... MBPP pass@100`` in percent, then each
    one's 95% bootstrap CI over problems (``<column> CI low`` / ``CI high``); a metric that was not measured
    (suite not run, or k above the samples drawn) is empty."""
    label = {"humaneval": "HumanEval", "mbpp": "MBPP"}
    records = []
    for method, metrics in rows.items():
        rec: dict[str, Any] = {"Method": method}
        bounds: dict[str, Any] = {}
        for s in suites:
            for k in ks:
                key, col = f"{s}/pass@{k}", f"{label.get(s, s)} pass@{k}"
                rec[col] = _percent(metrics.get(key))
                bounds[col + CI_LOW] = _percent(metrics.get(f"{key}/ci_low"))
                bounds[col + CI_HIGH] = _percent(metrics.get(f"{key}/ci_high"))
        records.append(rec | bounds)
    return pd.DataFrame(records)


def _percent(v: float | None) -> float | None:
    return None if v is None else round(100 * v, 2)
