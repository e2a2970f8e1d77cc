"""The sentiment-control reward-KL frontier (paper 3.2, Figures 2 and 3) as one reproducible experiment.

1. prompts: 5-8-token prefixes of movie reviews (offline: Pang & Lee; IMDB by hub name), train and held-out test;
2. pairs: the best- and worst-scored of ``pair_samples`` reference samples per train prompt (the paper: two;
   cached; ``sparsepo.experiments.sentiment.pairs``);
3. the reference point (step 0: the reference policy, KL 0) evaluated once on the same test prompts and seed;
4. a Ray Tune grid over methods x beta (x training seed with ``seeds``), each trial a Ray Train run that every ``eval_every`` steps samples one
   completion per test prompt and reports reward and response-level KL per prompt (``SentimentEvaluator``), either
   inside the training loop (``eval_mode="inline"``) or from its saved checkpoints by Ray tasks
   (``eval_mode="checkpoints"``, HF or vLLM generation: ``sparsepo.experiments.sentiment.evaluation``);
5. outputs in ``<storage>/<name>/``: ``points.csv``/``.parquet`` (every point with 95% bootstrap CIs of reward and
   KL), ``per_prompt.csv`` (the values the CIs come from), ``train_points.csv`` (every logged step: loss, token KL,
   mask sparsity), Pareto fronts per method and overall (each with the reference point), ``matched_kl.csv`` and
   ``fronts_at_budgets.csv`` (selection-free, Holm-corrected: ``comparison``), ``points_by_seed.csv``,
   ``sparsity_summary.csv`` (Figure 3's readings per seed: ``sparsity``), ``frontier.png``, ``sparsity.png``,
   ``sparsity_rejected.png`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sparsepo.experiments.stages import DRIVER_CPUS, local_cache, output_dir, publish
from sparsepo.io import is_remote, resolve_storage, upload_dir

# Heavy modules (torch, pandas, matplotlib) load inside the stages: `sparsepo frontier --help` must not wait for them.
if TYPE_CHECKING:
    import pandas as pd

# Paper grids (section 3.2) for clusters; SimPO's beta lives on another scale.
PAPER_BETAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.0, 5.0)
PAPER_SIMPO_BETAS = (1.0, 2.0, 5.0, 10.0)
PAPER_METHODS = ("dpo", "simpo", "dpop", "tdpo1", "tdpo2", "mapo", "sparsepo")
EvalMode = Literal["inline", "checkpoints"]
EvalBackend = Literal["hf", "vllm"]  # out-of-loop evaluation loads one model per task: no Ray-of-Ray backend
EVAL_MODES, EVAL_BACKENDS = typing.get_args(EvalMode), typing.get_args(EvalBackend)
# A public IMDB SFT GPT-2 (the paper fine-tunes GPT-2-large on IMDB; name yours with `model`).
PAPER_SFT_MODEL = "lvwerra/gpt2-imdb"


@dataclass(frozen=True)
class FrontierConfig:
    """Everything the experiment depends on. Defaults finish on a 2-core CPU, offline, in about 15 minutes."""

    model: str = "smollm2"  # policy / SFT model: hub name, local folder or offline alias
    ref: str | None = None  # reference model (default: model)
    reviews: str = "pang-lee"  # pang-lee (offline), imdb, or a local file with a text column
    reviews_split: str = "train"  # split of `reviews` for the train prompts
    test_reviews_split: str | None = None  # split of `reviews` for the test prompts (imdb: test); None = held out of reviews_split
    reward: str = "vader"  # sentiment scorer: vader (offline) or hf (a classifier, reward_kwargs={"model": ...})
    reward_kwargs: dict[str, Any] = field(default_factory=dict)  # options of the scorer, e.g. {"model": <hf name>}
    methods: tuple[str, ...] = ("dpo", "sparsepo", "mapo")  # preference losses of the grid
    zoo: bool = False  # every registered preference method instead of `methods` (seeds default to 0 1)
    betas: tuple[float, ...] = (0.1, 0.5)  # beta grid of every method but the SimPO family
    simpo_betas: tuple[float, ...] = (2.0, 5.0)  # beta grid of SimPO, ConfPO, SePO, SparsePO-SimPO (another scale)
    steps: int = 48  # optimizer steps per trial
    eval_every: int = 48  # steps between evaluations (and, with eval_mode=checkpoints, checkpoints)
    n_train_prompts: int = 128  # train prompts; each gives at most one pair
    n_test_prompts: int = 160  # held-out test prompts, one completion each per evaluation
    pair_samples: int = 8  # reference samples per train prompt; the pair is the best- and worst-scored (paper: 2)
    pair_tokens: int = 16  # completion length of the pairs (tokens)
    eval_tokens: int = 16  # completion length in evaluation (tokens)
    temperature: float = 1.0  # sampling temperature of pairs and evaluation (1.0: multinomial, as the paper)
    batch_size: int = 4  # pairs per worker per step
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-4  # peak learning rate (cosine schedule, 10% warm-up)
    max_length: int = 32  # prompt + completion tokens in training
    max_prompt_length: int = 12  # prompt tokens in training
    num_workers: int = 1  # Ray Train workers per trial
    use_gpu: bool = False  # train (and evaluate out of the loop) on GPUs
    max_concurrent_trials: int | None = None  # trials at once (default: what the cluster holds)
    storage_path: str = "runs"  # local folder or s3:// URI
    name: str = "frontier"  # experiment name (folder under storage_path; needed for resume)
    resume: bool = False  # continue an interrupted sweep without rerunning finished trials
    seed: int = 0  # seed of prompts, pairs, training and evaluation sampling
    seeds: tuple[int, ...] = ()  # training seeds (order, mask start): every grid point once per seed; () = (seed,)
    backend: str = "hf"  # generator of the pairs: hf, vllm, ray or one added by sparsepo.generation.register_backend
    eval_mode: EvalMode = "inline"  # inline: rank 0 evaluates in the loop; checkpoints: Ray tasks evaluate saved checkpoints
    eval_backend: EvalBackend = "hf"  # generator of out-of-loop evaluation (reference point, checkpoints)
    eval_batch_size: int = 16  # prompts per generate call in evaluation (HF samples depend on it)
    n_resamples: int = 1000  # bootstrap resamples of every CI and paired test
    kl_budgets: tuple[float, ...] = ()  # KL budgets (nats) of the matched-KL comparison; () = terciles of the points' KL
    overrides: list[str] = field(default_factory=list)  # TrainConfig overrides for every trial, e.g. lora.r=8

    def __post_init__(self) -> None:
        # the flags and config files are checked against the Literal types; these catch direct construction
        if self.eval_mode not in EVAL_MODES:
            raise ValueError(f"FrontierConfig.eval_mode: {self.eval_mode!r} is not one of {EVAL_MODES}")
        if self.eval_backend not in EVAL_BACKENDS:
            raise ValueError(f"FrontierConfig.eval_backend: {self.eval_backend!r} is not one of {EVAL_BACKENDS}")
        problems = settings_problems(self)
        if problems:  # every bad setting at once, before pairs are sampled or Ray starts
            raise ValueError("FrontierConfig: " + "; ".join(problems))


# (field, smallest allowed value, whether the value itself may equal it) of the numeric settings
_LOWER_BOUNDS = (("steps", 1, True), ("eval_every", 1, True), ("n_train_prompts", 1, True), ("n_test_prompts", 2, True),
                 ("pair_samples", 2, True), ("pair_tokens", 1, True), ("eval_tokens", 1, True),
                 ("temperature", 0, False), ("batch_size", 1, True), ("grad_accum", 1, True), ("lr", 0, False),
                 ("max_prompt_length", 1, True), ("num_workers", 0, True), ("eval_batch_size", 1, True),
                 ("n_resamples", 1, True))


def settings_problems(cfg: FrontierConfig) -> list[str]:
    """Every setting of ``cfg`` that is out of range or names nothing registered, as ``flag: problem`` texts."""
    from sparsepo.evaluation.reward_models import available_scorers
    from sparsepo.generation import available_backends
    from sparsepo.objectives.losses import LOSSES

    out = [f"{name} must be {'>=' if closed else '>'} {low}, got {getattr(cfg, name)}"
           for name, low, closed in _LOWER_BOUNDS
           if not (getattr(cfg, name) >= low if closed else getattr(cfg, name) > low)]
    out += [f"methods: {m!r} is not a registered method ({', '.join(sorted(LOSSES))})"
            + (" (lists are separate values: --methods dpo sparsepo)" if "," in m else "")
            for m in cfg.methods if m not in LOSSES]
    out += [f"{name}: {b} is not > 0" for name in ("betas", "simpo_betas", "kl_budgets") for b in getattr(cfg, name)
            if not b > 0]
    if not cfg.methods:
        out.append("methods: empty")
    if len(set(cfg.seeds)) != len(cfg.seeds) or any(x < 0 for x in cfg.seeds):
        out.append(f"seeds: {list(cfg.seeds)} must be distinct and >= 0")
    if cfg.max_length <= cfg.max_prompt_length:
        out.append(f"max_length ({cfg.max_length}) must exceed max_prompt_length ({cfg.max_prompt_length})")
    if cfg.reward not in available_scorers():
        out.append(f"reward: {cfg.reward!r} is not one of {', '.join(available_scorers())}")
    if cfg.backend not in available_backends():
        out.append(f"backend: {cfg.backend!r} is not one of {', '.join(available_backends())}")
    return out


def paper_preset() -> dict[str, Any]:
    """FrontierConfig overrides for the paper's setup (section 3.2; for a GPU cluster).

    IMDB prompts (train prompts from IMDB train, one completion per prompt of the full IMDB test split every 100
    steps), the RoBERTa-large sentiment reward, the paper's methods and beta grids, multinomial sampling, vLLM
    evaluation of checkpoints beside training. ``model`` names a public IMDB SFT GPT-2; the paper's own SFT model
    is GPT-2-large fine-tuned on IMDB: pass its name (or folder) as ``model`` to match it exactly.
    """
    return {
        "model": PAPER_SFT_MODEL,
        "reviews": "imdb", "reviews_split": "train", "test_reviews_split": "test",
        "reward": "hf", "reward_kwargs": {"model": "siebert/sentiment-roberta-large-english"},
        "methods": PAPER_METHODS, "betas": PAPER_BETAS, "simpo_betas": PAPER_SIMPO_BETAS,
        "n_train_prompts": 20_000, "n_test_prompts": 25_000, "pair_samples": 2, "pair_tokens": 48, "eval_tokens": 48,
        "temperature": 1.0, "steps": 1_000, "eval_every": 100, "batch_size": 8, "grad_accum": 8, "lr": 1e-6,
        "max_length": 64, "max_prompt_length": 16, "use_gpu": True,
        "backend": "vllm", "eval_mode": "checkpoints", "eval_backend": "vllm", "eval_batch_size": 64,
    }


def paper_config(cfg: FrontierConfig) -> FrontierConfig:
    """``cfg`` with the paper's setup (:func:`paper_preset`); the command then applies explicit flags over it."""
    return dataclasses.replace(cfg, **paper_preset())


def storage_root(cfg: FrontierConfig) -> str:
    return resolve_storage(cfg.storage_path)


ZOO_SEEDS = (0, 1)


def training_seeds(cfg: FrontierConfig) -> tuple[int, ...]:
    """The seeds every grid point is trained with: ``seeds``, or ``(seed,)`` (``zoo``: :data:`ZOO_SEEDS`)."""
    return tuple(cfg.seeds) or (ZOO_SEEDS if cfg.zoo else (cfg.seed,))


def grid_methods(cfg: FrontierConfig) -> tuple[str, ...]:
    """``methods``, or with ``zoo`` every registered preference-pair objective."""
    from sparsepo.objectives.losses import LOSSES

    return tuple(n for n, s in LOSSES.items() if s.inputs == "pairs") if cfg.zoo else tuple(cfg.methods)


def grid_points(cfg: FrontierConfig) -> dict[str, dict[str, Any]]:
    """Trial name -> its settings: every method x beta (x training seed, named only when there are several)."""
    from sparsepo.objectives.losses import simpo_scale

    points = {}
    seeds = training_seeds(cfg)
    for method in grid_methods(cfg):
        for beta in cfg.simpo_betas if simpo_scale(method) else cfg.betas:
            for seed in seeds:
                name = f"{method}/beta={beta:g}" + (f"/seed={seed}" if len(seeds) > 1 else "")
                points[name] = {"method": method, "loss.beta": float(beta), "run.seed": int(seed)}
    return points


def prepare_pairs(cfg: FrontierConfig, log: Any = print) -> tuple[str, list[str], int]:
    """(data path the workers read, held-out test prompts, number of pairs)."""
    from sparsepo.experiments.sentiment.pairs import build_sentiment_pairs
    from sparsepo.experiments.sentiment.prompts import split_prompts
    from sparsepo.training.models import load_tokenizer

    tok = load_tokenizer(cfg.ref or cfg.model)
    train, test = split_prompts(cfg.reviews, tok, cfg.n_train_prompts, cfg.n_test_prompts, seed=cfg.seed,
                                split=cfg.reviews_split, test_split=cfg.test_reviews_split)
    t = time.perf_counter()
    path, rows = build_sentiment_pairs(
        cfg.ref or cfg.model, train, reward=cfg.reward, reward_kwargs=cfg.reward_kwargs, backend=cfg.backend,
        max_new_tokens=cfg.pair_tokens, temperature=cfg.temperature, n=cfg.pair_samples, seed=cfg.seed,
        cache_dir=local_cache(cfg.storage_path, "pairs"),
    )
    log(f"[frontier] {len(rows)} preference pairs from {len(train)} prompts ({time.perf_counter() - t:.0f}s): {path}")
    if not rows:
        raise ValueError("no preference pairs: every prompt's two samples tied on reward")
    return publish(cfg.storage_path, cfg.name, path), test, len(rows)


def evaluator_args(cfg: FrontierConfig, test_prompts: list[str]) -> dict[str, Any]:
    """``SentimentEvaluator`` arguments: one set for the reference, the in-loop and the checkpoint evaluations."""
    return {"prompts": test_prompts, "reward": cfg.reward, "reward_kwargs": cfg.reward_kwargs,
            "ref": cfg.ref or cfg.model, "max_new_tokens": cfg.eval_tokens, "temperature": cfg.temperature,
            "seed": cfg.seed, "batch_size": cfg.eval_batch_size}


def base_config(cfg: FrontierConfig, data_path: str, test_prompts: list[str], oracle: str | None = None):  # noqa: ANN201
    """The TrainConfig every trial shares (``oracle``: the zoo weightings' oracle model, when a method needs one)."""
    from sparsepo.config.schema import apply_overrides, from_dict

    inline = cfg.eval_mode == "inline"
    values = {
        "method": grid_methods(cfg)[0],
        "model": {"name": cfg.model, "ref": cfg.ref, "oracle": oracle},
        "data": {"path": data_path, "max_length": cfg.max_length, "max_prompt_length": cfg.max_prompt_length,
                 "truncate_prompt": True},
        "optim": {"lr": cfg.lr, "max_steps": cfg.steps, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
                  "warmup_ratio": 0.1},
        "run": {
            "name": cfg.name, "storage_path": storage_root(cfg), "num_workers": cfg.num_workers, "use_gpu": cfg.use_gpu,
            # CPU: unset, so run_sweep splits the cores between the concurrent trials
            "cpus_per_worker": 1.0 if cfg.use_gpu else None,
            "seed": cfg.seed, "log_every": 1, "save_every": cfg.eval_every, "eval_every": cfg.eval_every if inline else 0,
            # inline: the last checkpoint, for --resume (the table, not the policies, is the output);
            # checkpoints: every one, for the evaluation tasks.
            "keep_checkpoints": 1 if inline else None,
            "evaluator": "sparsepo.evaluation.sentiment:SentimentEvaluator" if inline else None,
            "evaluator_args": evaluator_args(cfg, test_prompts) if inline else {},
        },
    }
    return from_dict(apply_overrides(values, cfg.overrides), where="frontier")


def reference_metrics(cfg: FrontierConfig, test_prompts: list[str], out: Path, log: Any = print) -> dict[str, Any]:
    """The reference (step-0) point's metrics, evaluated once per experiment and kept in ``out`` for resumes."""
    import json

    from sparsepo.experiments.sentiment.evaluation import evaluate_reference

    path = out / "reference.json"
    args = evaluator_args(cfg, test_prompts)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("evaluator_args") == args:
            return saved["metrics"]
    t = time.perf_counter()
    metrics = evaluate_reference(cfg.ref or cfg.model, args, backend=cfg.eval_backend, use_gpu=cfg.use_gpu)
    log(f"[frontier] reference point: reward {metrics['eval/reward']:.3f} on {len(test_prompts)} prompts "
        f"({time.perf_counter() - t:.0f}s)")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"evaluator_args": args, "metrics": metrics}))
    return metrics


def oracle_stage(cfg: FrontierConfig, data_path: str, log: Any = print) -> str | None:
    """The zoo's oracle (DPO at beta 0.1 on the same pairs, as long as a trial; cached), when a method needs it."""
    from sparsepo.experiments.stages import needs_oracle, train_oracle

    if not needs_oracle(grid_methods(cfg)):
        return None
    base = base_config(dataclasses.replace(cfg, zoo=False, methods=("dpo",)), data_path, [])
    train = {k: dataclasses.asdict(getattr(base, k)) for k in ("data", "optim", "run")}
    return train_oracle(data_path, model=cfg.ref or cfg.model, storage_path=cfg.storage_path, steps=cfg.steps,
                        lr=cfg.lr, train=train, tag=cfg.name, log=log)


def checkpoint_results(results: pd.DataFrame, evaluations: Any) -> pd.DataFrame:
    """``results`` with the ``eval/*`` metrics of every saved checkpoint (``evaluations``: the sweep's
    :class:`~sparsepo.experiments.sentiment.evaluation.CheckpointEvaluations`) joined on (trial_id, step)."""
    paths = results.groupby("trial_id")["trial_path"].first().to_dict()
    evals = evaluations.results(paths)
    base = results.drop(columns=[c for c in evals.columns if c not in ("trial_id", "step") and c in results])
    if "step" not in base:  # no trial reported a step
        return base
    return base.merge(evals, on=["trial_id", "step"], how="left")


def run_frontier(cfg: FrontierConfig, log: Any = print) -> dict[str, Path]:
    """Run (or ``resume``) the whole experiment; returns the output files."""
    import ray

    t0 = time.perf_counter()
    out = output_dir(cfg.storage_path, cfg.name)
    data_path, test_prompts, _ = prepare_pairs(cfg, log)
    if not ray.is_initialized():
        ray.init()
    reference = reference_metrics(cfg, test_prompts, out, log)
    points = grid_points(cfg)
    base = base_config(cfg, data_path, test_prompts, oracle_stage(cfg, data_path, log))
    log(f"[frontier] sweep of {len(points)} trials: {', '.join(points)}")
    evaluations = checkpoint_evaluations(cfg, test_prompts)
    results = sweep_results(cfg, run_grid(cfg, base, points, evaluations), evaluations, log)
    return write_tables_and_report(cfg, results, points, reference, out, t0, log)


def checkpoint_evaluations(cfg: FrontierConfig, test_prompts: list[str]) -> Any:
    """With ``eval_mode="checkpoints"``, the sweep's callback that evaluates every saved checkpoint by Ray tasks
    as checkpoints appear, beside the training (a ``CheckpointEvaluations``); ``None`` for inline evaluation."""
    if cfg.eval_mode != "checkpoints":
        return None
    from sparsepo.experiments.sentiment.evaluation import CheckpointEvaluations

    return CheckpointEvaluations(evaluator_args(cfg, test_prompts), backend=cfg.eval_backend, use_gpu=cfg.use_gpu,
                                 storage=storage_root(cfg))


def run_grid(cfg: FrontierConfig, base: Any, points: dict[str, dict[str, Any]], evaluations: Any) -> pd.DataFrame:
    """The Ray Tune sweep of the grid ``points`` from the TrainConfig ``base``; its results frame."""
    from sparsepo.experiments.sentiment.points import POINT_AXIS
    from sparsepo.sweeps.tuning import DropFinishedCheckpoints, results_frame, run_sweep

    grid = run_sweep(
        base,
        {POINT_AXIS: {"variants": points}},
        search="grid",
        metric="eval/reward" if cfg.eval_mode == "inline" else "loss",
        mode="max" if cfg.eval_mode == "inline" else "min",
        max_concurrent_trials=cfg.max_concurrent_trials,
        driver_cpus=DRIVER_CPUS,
        storage_path=storage_root(cfg),
        name=f"{cfg.name}-sweep",
        resume=cfg.resume,
        # in-loop evaluation: the table is the output, so a finished trial's checkpoint goes (it stays for --resume
        # while the trial runs); checkpoint evaluation reads them after the sweep
        callbacks=[evaluations] if evaluations else [DropFinishedCheckpoints()],
    )
    return results_frame(grid)


def sweep_results(cfg: FrontierConfig, results: pd.DataFrame, evaluations: Any, log: Any = print) -> pd.DataFrame:
    """The sweep's ``results`` (failed trials named in a warning) with, under checkpoint evaluation, every
    checkpoint's metrics joined (:func:`checkpoint_results`)."""
    failed = results[results["error"].notna()]["trial_id"].unique() if "error" in results else []
    if len(failed):
        log(f"[frontier] warning: {len(failed)} trial(s) failed; their finished points are kept: {list(failed)}")
    if evaluations is None or results.empty:
        return results
    t = time.perf_counter()
    results = checkpoint_results(results, evaluations)
    log(f"[frontier] {evaluations.submitted} checkpoints evaluated by Ray tasks ({cfg.eval_backend}) during the "
        f"sweep, {evaluations.after} after it; waited {time.perf_counter() - t:.0f}s after it")
    for f in evaluations.failed:
        log(f"[frontier] warning: evaluation of trial {f['trial_id']} step {f['step']} failed twice, its point is "
            f"missing ({f['path']}): {f['error']}")
    return results


def write_tables_and_report(cfg: FrontierConfig, results: pd.DataFrame, points: dict[str, dict[str, Any]],
                            reference: dict[str, Any], out: Path, t0: float, log: Any = print) -> dict[str, Path]:
    """The points (with CIs), per-prompt and training tables, fronts, figures and report in ``out`` (copied to
    the storage when it is remote); returns the output files. ``t0``: when the experiment started."""
    from sparsepo.experiments.sentiment.points import (
        per_prompt_table,
        points_by_seed,
        points_table,
        train_table,
    )
    from sparsepo.experiments.sentiment.report import write_outputs

    table, per_prompt = points_table(results, points, reference, n_resamples=cfg.n_resamples, seed=cfg.seed)
    by_seed = points_by_seed(results, points, reference, n_resamples=cfg.n_resamples, seed=cfg.seed)
    files = write_outputs(table, per_prompt, train_table(results, points), out, cfg, time.perf_counter() - t0,
                          by_seed, per_prompt_table(results, points, reference))
    if is_remote(cfg.storage_path):  # the user (and `ray job submit`'s caller) reads them from the storage
        log(f"[frontier] outputs copied to {upload_dir(out, f'{storage_root(cfg)}/{cfg.name}/report')}")
    log(f"[frontier] done in {time.perf_counter() - t0:.0f}s; report: {files['report']}")
    return files
