"""The sentiment-control reward-KL frontier (paper 3.2, Figures 2 and 3) as one reproducible experiment.

1. prompts: 5-8-token prefixes of movie reviews (offline: Pang & Lee; IMDB by hub name), train and held-out test;
2. pairs: two reference samples per train prompt ranked by the sentiment reward (cached; ``sparsepo.experiments.sentiment.pairs``);
3. a Ray Tune grid over methods x beta, each trial a Ray Train run that every ``eval_every`` steps samples one
   completion per test prompt and reports reward and response-level KL (``SentimentEvaluator``);
4. outputs in ``<storage>/<name>/``: ``points.csv``/``.parquet`` (every method, beta, step, reward, kl, sparsity...
   point), Pareto fronts per method and overall, ``frontier.png``, ``sparsity.png`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sparsepo.config import from_dict
from sparsepo.eval.report import to_markdown
from sparsepo.io import is_remote, resolve_storage, write_text
from sparsepo.pareto import pareto_front
from sparsepo.plots import plot_frontier, plot_sparsity

# Paper grids (section 3.2) for clusters; SimPO's beta lives on another scale.
PAPER_BETAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.0, 5.0)
PAPER_SIMPO_BETAS = (1.0, 2.0, 5.0, 10.0)
PAPER_METHODS = ("dpo", "simpo", "dpop", "tdpo1", "tdpo2", "mapo", "sparsepo")
POINT_AXIS = "point"
# A trial's driver only waits on its Train workers: give it a sliver of a CPU so that, on a CPU machine,
# trials x (driver + worker) fill the cores exactly (2 concurrent trials of 0.99 CPU on 2 cores by default).
DRIVER_CPUS = 0.01
METRIC_COLUMNS = {
    "eval/reward": "reward",
    "eval/kl": "kl",
    "eval/kl_mc": "kl_mc",
    "mask/reward/chosen/sparsity": "sparsity/reward/chosen",
    "mask/kl/chosen/sparsity": "sparsity/kl/chosen",
    "mask/reward/rejected/sparsity": "sparsity/reward/rejected",
    "mask/kl/rejected/sparsity": "sparsity/kl/rejected",
}


@dataclass
class FrontierConfig:
    """Everything the experiment depends on. Defaults finish on a 2-core CPU, offline, in minutes."""

    model: str = "smollm2"
    ref: str | None = None
    reviews: str = "pang-lee"
    reviews_split: str = "train"
    reward: str = "vader"
    reward_kwargs: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = ("dpo", "sparsepo")
    betas: tuple[float, ...] = (0.1, 0.5)
    simpo_betas: tuple[float, ...] = (2.0,)
    steps: int = 12
    eval_every: int = 6
    n_train_prompts: int = 48
    n_test_prompts: int = 12
    pair_tokens: int = 24
    eval_tokens: int = 24
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 5e-5
    max_length: int = 48
    max_prompt_length: int = 16
    num_workers: int = 1
    use_gpu: bool = False
    concurrency: int | None = None
    storage_path: str = "runs"
    name: str = "frontier"
    resume: bool = False
    seed: int = 0
    backend: str = "hf"
    overrides: list[str] = field(default_factory=list)


def storage_root(cfg: FrontierConfig) -> str:
    return resolve_storage(cfg.storage_path)


def grid_points(cfg: FrontierConfig) -> dict[str, dict[str, Any]]:
    """Variant name -> config keys for every (method, beta) of the sweep."""
    points = {}
    for method in cfg.methods:
        for beta in cfg.simpo_betas if method == "simpo" else cfg.betas:
            points[f"{method}/beta={beta:g}"] = {"method": method, "loss.beta": float(beta)}
    return points


def prepare_pairs(cfg: FrontierConfig, log: Any = print) -> tuple[str, list[str], int]:
    """(data path the workers read, held-out test prompts, number of pairs)."""
    from sparsepo.experiments.sentiment.pairs import build_sentiment_pairs
    from sparsepo.experiments.sentiment.prompts import split_prompts
    from sparsepo.models import load_tokenizer

    tok = load_tokenizer(cfg.ref or cfg.model)
    train, test = split_prompts(cfg.reviews, tok, cfg.n_train_prompts, cfg.n_test_prompts, seed=cfg.seed, split=cfg.reviews_split)
    t = time.perf_counter()
    # Shared by every experiment under the same storage: a rerun with the same settings reuses the pairs.
    local_cache = Path("~/.cache/sparsepo/pairs").expanduser() if is_remote(cfg.storage_path) else Path(storage_root(cfg)) / "pairs"
    path, rows = build_sentiment_pairs(
        cfg.ref or cfg.model, train, reward=cfg.reward, reward_kwargs=cfg.reward_kwargs, backend=cfg.backend,
        max_new_tokens=cfg.pair_tokens, seed=cfg.seed, cache_dir=local_cache,
    )
    log(f"[frontier] {len(rows)} preference pairs from {len(train)} prompts ({time.perf_counter() - t:.0f}s): {path}")
    if not rows:
        raise ValueError("no preference pairs: every prompt's two samples tied on reward")
    data_path = str(path)
    if is_remote(cfg.storage_path):  # workers on other nodes read the pairs from the shared storage
        data_path = f"{storage_root(cfg)}/{cfg.name}/pairs.jsonl"
        write_text(data_path, Path(path).read_text())
    return data_path, test, len(rows)


def base_config(cfg: FrontierConfig, data_path: str, test_prompts: list[str]):  # noqa: ANN201 - TrainConfig
    from sparsepo.config import apply_overrides

    values = {
        "method": cfg.methods[0],
        "model": {"name": cfg.model, "ref": cfg.ref},
        "data": {"path": data_path, "max_length": cfg.max_length, "max_prompt_length": cfg.max_prompt_length,
                 "truncate_prompt": True},
        "optim": {"lr": cfg.lr, "max_steps": cfg.steps, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
                  "warmup_ratio": 0.1},
        "run": {
            "name": cfg.name, "storage_path": storage_root(cfg), "num_workers": cfg.num_workers, "use_gpu": cfg.use_gpu,
            # CPU: unset, so run_sweep splits the cores between the concurrent trials
            "cpus_per_worker": 1.0 if cfg.use_gpu else None,
            "seed": cfg.seed, "log_every": 1, "save_every": cfg.eval_every, "eval_every": cfg.eval_every,
            "keep_checkpoints": 1,  # the last one, for --resume; the table, not the policies, is the output
            "evaluator": "sparsepo.eval.sentiment:SentimentEvaluator",
            "evaluator_args": {"prompts": test_prompts, "reward": cfg.reward, "reward_kwargs": cfg.reward_kwargs,
                               "ref": cfg.ref or cfg.model, "max_new_tokens": cfg.eval_tokens, "seed": cfg.seed},
        },
    }
    return from_dict(apply_overrides(values, cfg.overrides), where="frontier")


def points_table(results: pd.DataFrame, points: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Every evaluation point: method, beta, step, reward, kl (+ kl_mc, sparsity, token KL when logged)."""
    if results.empty or "eval/reward" not in results:
        return pd.DataFrame(columns=["method", "beta", "step", "reward", "kl"])
    df = results[results["eval/reward"].notna()].copy()
    df["method"] = [points[p]["method"] for p in df[POINT_AXIS]]
    df["beta"] = [points[p]["loss.beta"] for p in df[POINT_AXIS]]
    df = df.rename(columns=METRIC_COLUMNS)
    keep = ["method", "beta", "step", "reward", "kl", "kl_mc", "kl/chosen", "kl/rejected", "loss", "rewards/accuracy",
            *[v for v in METRIC_COLUMNS.values() if v.startswith("sparsity")], "trial_id"]
    return df[[c for c in keep if c in df]].sort_values(["method", "beta", "step"]).reset_index(drop=True)


def write_outputs(points: pd.DataFrame, out: Path, cfg: FrontierConfig, elapsed_s: float) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    by_method = pareto_front(points, x="kl", y="reward", group="method")
    overall = pareto_front(points, x="kl", y="reward")
    files = {
        "points": out / "points.csv",
        "front_by_method": out / "front_by_method.csv",
        "front_overall": out / "front_overall.csv",
        "frontier": out / "frontier.png",
        "sparsity": out / "sparsity.png",
        "report": out / "report.md",
    }
    points.to_csv(files["points"], index=False)
    points.to_parquet(out / "points.parquet", index=False)
    by_method.to_csv(files["front_by_method"], index=False)
    overall.to_csv(files["front_overall"], index=False)
    plot_frontier(points, by_method, files["frontier"])
    plot_sparsity(points, files["sparsity"])
    cols = ["method", "beta", "step", "reward", "kl"]
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("overrides",)}
    files["report"].write_text(
        "\n".join([
            f"# Reward-KL frontier: {cfg.name}",
            "",
            f"Model `{cfg.model}` (reference `{cfg.ref or cfg.model}`), reward `{cfg.reward}`, "
            f"{len(points)} evaluation points, wall time {elapsed_s:.0f} s.",
            "",
            "## Pareto front (all methods)",
            "",
            to_markdown(overall[cols]),
            "",
            "## Pareto front per method",
            "",
            to_markdown(by_method[cols]),
            "",
            "## Last point of every trial",
            "",
            to_markdown(points.groupby(["method", "beta"], as_index=False).last()[[c for c in points if c != "trial_id"]]),
            "",
            "![frontier](frontier.png) ![sparsity](sparsity.png)",
            "",
            "## Settings",
            "",
            "```",
            *(f"{k}: {v}" for k, v in settings.items()),
            "```",
            "",
        ])
    )
    return files


def run_frontier(cfg: FrontierConfig, log: Any = print) -> dict[str, Path]:
    """Run (or ``resume``) the whole experiment; returns the output files."""
    from sparsepo.tuning import results_frame, run_sweep

    t0 = time.perf_counter()
    data_path, test_prompts, _ = prepare_pairs(cfg, log)
    points = grid_points(cfg)
    base = base_config(cfg, data_path, test_prompts)
    log(f"[frontier] sweep of {len(points)} trials: {', '.join(points)}")
    grid = run_sweep(
        base,
        {POINT_AXIS: {"variants": points}},
        search="grid",
        metric="eval/reward",
        mode="max",
        max_concurrent_trials=cfg.concurrency,
        driver_cpus=DRIVER_CPUS,
        storage_path=storage_root(cfg),
        name=f"{cfg.name}-sweep",
        resume=cfg.resume,
    )
    results = results_frame(grid)
    failed = results[results["error"].notna()]["trial_id"].unique() if "error" in results else []
    if len(failed):
        log(f"[frontier] warning: {len(failed)} trial(s) failed; their finished points are kept: {list(failed)}")
    table = points_table(results, points)
    out = Path(cfg.name) if is_remote(cfg.storage_path) else Path(storage_root(cfg)) / cfg.name
    files = write_outputs(table, out, cfg, time.perf_counter() - t0)
    log(f"[frontier] done in {time.perf_counter() - t0:.0f}s; report: {files['report']}")
    return files
