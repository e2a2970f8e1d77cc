"""Text-to-code (paper 3.5, Table 2) as one reproducible experiment, in the shape of the sentiment frontier.

Stages, each printing its progress and caching what it makes under ``<storage>/`` keyed by what determines it:

1. ``sft`` (``sft_steps > 0``): SFT of ``model`` on the reference solutions of the ``sft_data`` problems (disjoint
   from the pair and evaluation problems); with ``sft_steps=0`` ``model`` is taken as the SFT model;
2. ``pairs``: ``pair_samples`` solutions per training problem from the SFT model, executed in the sandbox, each
   passing one paired with a random failing one of its problem (appendix B.5; ``sparsepo.experiments.code.pairs``);
3. ``baseline``: pass@k of the SFT model itself (the table's first row);
4. ``sweep``: one Ray Tune trial per PO method, each a Ray Train run from the SFT model (its reference) whose
   evaluator measures pass@k on the held-out suites at the last step (``CodeEvaluator``);
5. ``report``: ``table2.csv`` and ``report.md`` (the table in the paper's layout, the pair statistics, the settings)
   in ``<storage>/<name>/``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsepo.experiments.stages import (
    AXIS,
    cached_baseline,
    last_evaluations,
    local_cache,
    method_sweep_values,
    output_dir,
    publish,
    run_method_sweep,
    train_sft,
)

# Heavy modules (torch, pandas, matplotlib) load inside the stages: `sparsepo code --help` must not wait for them.

PAPER_METHODS = ("dpo", "simpo", "dpop", "tdpo1", "tdpo2", "mapo", "sparsepo")
# Miniature problem sets (HumanEval task ids). Training: short, easy problems; after the miniature's SFT stage
# SmolLM2-135M solves 8 of these 12 in some but not all of 8 samples at temperature 0.8 (19 pairs, measured), so
# pairs exist offline on a CPU. Evaluation: other, similarly easy ones.
MINI_TRAIN = tuple(f"HumanEval/{i}" for i in (2, 23, 53, 45, 30, 42, 35, 60, 48, 28, 15, 34))
MINI_EVAL = tuple(f"HumanEval/{i}" for i in (52, 55, 13, 29, 7, 16))
# SFT data of the miniature: other HumanEval problems' reference solutions. SmolLM2-135M-Instruct answers a bare
# function prompt like a chat ("```" and prose, 0 of 8 samples pass); SFT on prompt -> body teaches the format.
MINI_SFT = tuple(f"HumanEval/{i}" for i in range(60, 164) if f"HumanEval/{i}" not in MINI_TRAIN + MINI_EVAL)


@dataclass(frozen=True)
class CodeConfig:
    """Everything the experiment depends on. Defaults: the offline miniature (SmolLM2-135M, HumanEval subsets)."""

    model: str = "smollm2"
    sft_steps: int = 12
    sft_lr: float = 1e-4
    sft_data: dict[str, Any] = field(default_factory=lambda: {"suite": "humaneval", "task_ids": list(MINI_SFT)})
    train: dict[str, Any] = field(default_factory=lambda: {"suite": "humaneval", "task_ids": list(MINI_TRAIN)})
    eval_suites: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"humaneval": {"suite": "humaneval", "task_ids": list(MINI_EVAL)}}
    )
    pair_samples: int = 8
    pair_temperature: float = 0.8
    top_p: float = 0.95
    pair_tokens: int = 96
    methods: tuple[str, ...] = ("dpo", "sparsepo")
    beta: float = 0.1
    simpo_beta: float = 2.0
    steps: int | None = 4
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 1e-4  # miniature: 4 steps must move the policy enough to change its samples
    max_length: int = 320
    max_prompt_length: int = 224
    eval_n: int = 10
    eval_plan: tuple[tuple[float, tuple[int, ...]], ...] = ((0.8, (1, 10)),)
    eval_tokens: int = 96
    num_workers: int = 1
    use_gpu: bool = False
    max_concurrent_trials: int | None = None  # trials at once (default: what the cluster holds)
    storage_path: str = "runs"
    name: str = "code"
    resume: bool = False
    seed: int = 0
    backend: str = "hf"  # generation backend for pairs and the SFT baseline: hf, vllm or ray
    mbpp: str = "mbpp"  # MBPP by hub name or local file (used by --paper)
    overrides: list[str] = field(default_factory=list)


def paper_config(cfg: CodeConfig) -> CodeConfig:
    """``cfg`` with the paper's settings, MBPP read from ``cfg.mbpp``."""
    return paper_preset(cfg, cfg.mbpp)


def paper_preset(cfg: CodeConfig, mbpp: str = "mbpp") -> CodeConfig:
    """The paper's settings (for a GPU cluster): MBPP train (384 problems) for pairs, all PO methods, pass@1/10/100
    with 100 samples on HumanEval (164) and MBPP test (500); ``cfg.model`` is the SFT model (no SFT stage unless
    ``sft_steps`` is set again). ``cfg``'s model, storage and name are kept."""
    from sparsepo.experiments.code.evaluation import PAPER_PLAN

    return dataclasses.replace(
        cfg, train={"suite": "mbpp", "source": mbpp, "split": "train"},
        eval_suites={"humaneval": {"suite": "humaneval"}, "mbpp": {"suite": "mbpp", "source": mbpp, "split": "test"}},
        sft_steps=0, pair_samples=100, pair_tokens=512, methods=PAPER_METHODS, steps=None, batch_size=4,
        grad_accum=8, lr=5e-7, max_length=1024, max_prompt_length=512, eval_n=100, eval_plan=PAPER_PLAN,
        eval_tokens=512, use_gpu=True,
        backend="ray",  # vLLM engines on the cluster's GPUs: the head that runs the driver has none
    )


def stage_sft(cfg: CodeConfig, log: Any = print) -> str:
    """The SFT model: ``cfg.model`` itself, or (``sft_steps > 0``) an SFT run on the ``sft_data`` problems' reference
    solutions (:func:`~sparsepo.experiments.stages.train_sft`). Returns a model path the later stages load."""
    from sparsepo.experiments.code.evaluation import load_suite

    if cfg.sft_steps <= 0:
        log(f"[code] sft: using {cfg.model} as the SFT model")
        return cfg.model
    rows = [{"prompt": p.prompt, "completion": p.canonical_solution} for p in load_suite(cfg.sft_data)]
    train = {"data": {"max_length": cfg.max_length, "max_prompt_length": cfg.max_prompt_length, "truncate_prompt": True},
             "optim": {"batch_size": cfg.batch_size},
             "run": {"num_workers": cfg.num_workers, "use_gpu": cfg.use_gpu, "seed": cfg.seed}}
    return train_sft(rows, model=cfg.model, storage_path=cfg.storage_path, steps=cfg.sft_steps, lr=cfg.sft_lr,
                     train=train, tag="code", log=log)


def stage_pairs(cfg: CodeConfig, model: str, log: Any = print) -> tuple[str, dict[str, Any]]:
    """(data path the workers read, pair statistics). Raises when no problem had both a pass and a fail."""
    from sparsepo.experiments.code.evaluation import load_suite
    from sparsepo.experiments.code.pairs import cached_code_pairs
    from sparsepo.generation import SamplingConfig, make_generator

    problems = load_suite(cfg.train)
    sampling = SamplingConfig(n=cfg.pair_samples, temperature=cfg.pair_temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.pair_tokens, seed=cfg.seed)
    t = time.perf_counter()
    generator = make_generator(cfg.backend, model)
    try:
        path, rows, summary = cached_code_pairs(generator, problems, sampling, model=model, seed=cfg.seed,
                                                cache_dir=local_cache(cfg.storage_path, "pairs"))
    finally:
        if hasattr(generator, "close"):
            generator.close()
    log(f"[code] pairs: {summary['pairs']} from {summary['problems_with_pass_and_fail']} of {len(problems)} problems "
        f"with both passing and failing samples ({time.perf_counter() - t:.0f}s): {path}")
    if not rows:
        raise ValueError(f"no code pairs: no training problem had both a passing and a failing sample ({summary}); "
                         "sample more (pair_samples) or choose problems the SFT model sometimes solves")
    return publish(cfg.storage_path, cfg.name, path), summary


def eval_args(cfg: CodeConfig) -> dict[str, Any]:
    return {"suites": cfg.eval_suites, "plan": [list(p) for p in cfg.eval_plan], "n": cfg.eval_n, "top_p": cfg.top_p,
            "max_new_tokens": cfg.eval_tokens, "seed": cfg.seed, "n_resamples": 1000}  # bootstrap CIs over problems


def stage_baseline(cfg: CodeConfig, model: str, log: Any = print) -> dict[str, float]:
    """pass@k of the SFT model (no PO), cached by model and evaluation settings."""
    from sparsepo.experiments.code.evaluation import load_suite, pass_at_k

    args = eval_args(cfg)

    def evaluate(generator: Any) -> dict[str, float]:
        suites = {name: load_suite(spec) for name, spec in cfg.eval_suites.items()}
        plan = [(t_, tuple(ks)) for t_, ks in args["plan"]]
        return pass_at_k(generator, suites, plan, n=cfg.eval_n, top_p=cfg.top_p, max_new_tokens=cfg.eval_tokens,
                         seed=cfg.seed, n_resamples=args["n_resamples"])

    t = time.perf_counter()
    metrics, cached = cached_baseline(cfg, model, args, "code", evaluate, log)
    if not cached:
        shown = ", ".join(f"{k} {100 * v:.1f}%" for k, v in metrics.items() if not k.endswith(("/ci_low", "/ci_high")))
        log(f"[code] baseline: {shown} ({time.perf_counter() - t:.0f}s)")
    return metrics


def sweep_config(cfg: CodeConfig, model: str, data_path: str):  # noqa: ANN201 - TrainConfig
    from sparsepo.config.schema import apply_overrides, from_dict

    values = method_sweep_values(cfg, model, data_path, evaluator="sparsepo.experiments.code.evaluation:CodeEvaluator",
                                 evaluator_args=eval_args(cfg))
    return from_dict(apply_overrides(values, list(cfg.overrides)), where="code")


def stage_sweep(cfg: CodeConfig, model: str, data_path: str, log: Any = print) -> dict[str, dict[str, float]]:
    """One trial per method; ``{method: pass@k metrics of its last evaluation}`` (failed trials are left out)."""
    first = f"eval/{next(iter(cfg.eval_suites))}/pass@1"
    results = run_method_sweep(cfg, sweep_config(cfg, model, data_path), first, "max", "code", log)
    return last_evaluations(results, AXIS, list(cfg.methods), first, "code", log)


def write_report(cfg: CodeConfig, rows: dict[str, dict[str, float]], pairs: dict[str, Any], model: str,
                 out: Path, elapsed_s: float) -> dict[str, Path]:
    from sparsepo.evaluation.report import interval_cells, settings_markdown, to_markdown
    from sparsepo.experiments.code.evaluation import table2

    out.mkdir(parents=True, exist_ok=True)
    table = table2(rows)
    files = {"table": out / "table2.csv", "report": out / "report.md"}
    table.to_csv(files["table"], index=False)
    shown = interval_cells(table, float_format="g")
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()}
    files["report"].write_text("\n".join([
        f"# Text-to-code (paper Table 2): {cfg.name}",
        "",
        f"SFT model `{model}`; pass@k in percent on held-out problems [95% bootstrap CI over problems]; wall time "
        f"{elapsed_s:.0f} s. Empty cells: not measured (suite not run, or k above the samples drawn).",
        "",
        to_markdown(shown),
        "",
        "## Preference pairs",
        "",
        *(f"- {k}: {v}" for k, v in pairs.items()),
        "",
        *settings_markdown(settings),
    ]))
    return files


def run_code(cfg: CodeConfig, log: Any = print) -> dict[str, Path]:
    """Run (or ``resume``) the whole experiment; returns the output files."""
    t0 = time.perf_counter()
    model = stage_sft(cfg, log)
    data_path, pairs = stage_pairs(cfg, model, log)
    rows = {"SFT": stage_baseline(cfg, model, log)}
    rows.update(stage_sweep(cfg, model, data_path, log))
    out = output_dir(cfg.storage_path, cfg.name)
    files = write_report(cfg, rows, pairs, model, out, time.perf_counter() - t0)
    log(f"[code] done in {time.perf_counter() - t0:.0f}s; report: {files['report']}")
    return files
