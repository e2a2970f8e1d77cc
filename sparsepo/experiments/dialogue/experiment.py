"""Dialogue: helpfulness and harmlessness (paper 3.3, Table 1) as one reproducible experiment.

Stages, each printing its progress and caching what it makes under ``<storage>/`` keyed by what determines it:

1. ``data``: HH-RLHF transcripts (``data``: the hub name, a local JSON/JSONL/Parquet/CSV file of the same schema,
   or ``offline``: :mod:`~sparsepo.experiments.dialogue.offline`'s review dialogues) parsed into conversational
   pairs (:mod:`~sparsepo.experiments.dialogue.transcripts`; a malformed transcript is an error naming its row);
2. ``sft`` (``sft_steps != 0``): SFT of ``model`` on the chosen responses (paper: one epoch, ``sft_steps=None``);
   with ``sft_steps=0`` ``model`` is taken as the SFT model;
3. ``sweep``: one Ray Tune trial per PO method, each a Ray Train run from the SFT model (its reference), saving
   its final checkpoint;
4. ``leaderboard``: the Open LLM Leaderboard suite on the SFT model and every final checkpoint, one Ray task each
   (:mod:`~sparsepo.experiments.dialogue.leaderboard`); offline, the local lm-eval tasks;
5. ``report``: ``table1.csv`` and ``report.md`` (the table in the paper's layout, the data, the settings) in
   ``<storage>/<name>/``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sparsepo.experiments.stages import (
    AXIS,
    cache_key,
    local_cache,
    method_sweep_values,
    output_dir,
    publish,
    run_method_sweep,
    train_sft,
    write_rows,
)

# Heavy modules (torch, pandas, matplotlib) load inside the stages: `sparsepo dialogue --help` must not wait for them.
if TYPE_CHECKING:
    from sparsepo.experiments.dialogue.leaderboard import LeaderboardSpec

PAPER_METHODS = ("dpo", "tdpo1", "tdpo2", "simpo", "dpop", "mapo", "sparsepo")
LOCAL_TASKS = ("sparsepo_toy_mc", "sparsepo_toy_gen", "sparsepo_toy_ifeval")


@dataclass(frozen=True)
class DialogueConfig:
    """Everything the experiment depends on. Defaults: the offline miniature (SmolLM2-135M, review dialogues,
    the local lm-eval tasks)."""

    model: str = "smollm2"
    data: str = "offline"  # "offline", the hub name Anthropic/hh-rlhf, or a local file of its schema
    split: str = "train"
    sft_examples: int | None = 48  # first rows of the split used for SFT (None: all)
    train_pairs: int | None = 32  # first rows used for PO (None: all)
    prompt_format: Literal["chat", "hh"] = "chat"  # chat: the tokenizer's chat template; hh: HH's "\n\nHuman: ...\n\nAssistant:" text
    sft_steps: int | None = 8  # 0: model is the SFT model; None: one epoch over the SFT examples
    sft_lr: float = 1e-4
    methods: tuple[str, ...] = ("dpo", "sparsepo")
    beta: float = 0.1
    simpo_beta: float = 2.0
    steps: int | None = 4  # None: one epoch over the pairs
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 5e-5
    max_length: int = 256
    max_prompt_length: int = 192
    eval_tasks: tuple[str, ...] = LOCAL_TASKS
    eval_suite: Literal["local_toy", "open_llm_v2"] = "local_toy"  # the Table 1 columns: offline, or the paper's
    eval_local_tasks: bool = True  # read eval_tasks from sparsepo/evaluation/lm_eval_tasks (offline)
    eval_limit: int | None = 4  # documents per subtask (None: all); the miniature: 4 of each toy subtask
    eval_backend: Literal["hf", "vllm"] = "hf"  # lm-eval's model backend
    eval_batch_size: str = "8"  # lm-eval batch size ("auto" on a GPU)
    num_workers: int = 1
    use_gpu: bool = False
    max_concurrent_trials: int | None = None  # trials at once (default: what the cluster holds)
    storage_path: str = "runs"
    name: str = "dialogue"
    resume: bool = False
    seed: int = 0
    overrides: list[str] = field(default_factory=list)


def paper_config(cfg: DialogueConfig) -> DialogueConfig:
    """The paper's settings (appendix B.4, for a GPU cluster): Anthropic/hh-rlhf, Pythia-1.4B SFT for one epoch on
    the chosen responses, every PO method for one epoch at full precision, the six leaderboard tasks with vLLM.
    Pythia has no chat template: HH's own text format is used. ``cfg``'s storage and name are kept."""
    from sparsepo.evaluation.openllm import LEADERBOARD_TASKS
    from sparsepo.experiments.dialogue.transcripts import HUB_NAME

    return dataclasses.replace(
        cfg, model="EleutherAI/pythia-1.4b", data=HUB_NAME, sft_examples=None, train_pairs=None, prompt_format="hh",
        sft_steps=None, sft_lr=5e-6, methods=PAPER_METHODS, steps=None, batch_size=4, grad_accum=8, lr=5e-7,
        max_length=512, max_prompt_length=384, eval_tasks=LEADERBOARD_TASKS, eval_suite="open_llm_v2",
        eval_local_tasks=False, eval_limit=None, eval_backend="vllm", eval_batch_size="auto", use_gpu=True,
    )


def hh_text(pair: dict[str, Any]) -> dict[str, str]:
    """A conversational pair as HH's own text: the prompt ``"\\n\\nHuman: ...\\n\\nAssistant:"``, responses
    ``" <reply>"`` (for tokenizers without a chat template, like Pythia's)."""
    names = {"user": "Human", "assistant": "Assistant"}
    prompt = "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in pair["prompt"]) + "\n\nAssistant:"
    return {"prompt": prompt, **{f: " " + pair[f][-1]["content"] for f in ("chosen", "rejected")}}


def _needed(cfg: DialogueConfig) -> int | None:
    sizes = (cfg.sft_examples, cfg.train_pairs)
    return None if None in sizes else max(sizes)


def stage_data(cfg: DialogueConfig, log: Any = print) -> list[dict[str, Any]]:
    """Conversational pairs (``prompt`` messages, ``chosen``/``rejected`` last assistant turn), as many as the SFT
    and PO stages use; in ``prompt_format="hh"`` as HH text. Offline rows are built and written to the cache
    first, then parsed from that file like any local HH file."""
    from sparsepo.experiments.dialogue.offline import OFFLINE_SOURCE, review_dialogues
    from sparsepo.experiments.dialogue.transcripts import load_hh_pairs

    if cfg.prompt_format not in ("chat", "hh"):
        raise ValueError(f"prompt_format must be 'chat' or 'hh', got {cfg.prompt_format!r}")
    n, source = _needed(cfg), cfg.data
    t = time.perf_counter()
    if source == OFFLINE_SOURCE:
        rows = review_dialogues(n or 1000, seed=cfg.seed)
        source = str(write_rows(local_cache(cfg.storage_path, "data") /
                                f"dialogue-hh-{cache_key(n=len(rows), seed=cfg.seed)}.jsonl", rows))
    pairs, report = load_hh_pairs(source, cfg.split, limit=n)
    if cfg.prompt_format == "hh":
        pairs = [hh_text(p) for p in pairs]
    turns = sum(len(p["prompt"]) for p in pairs) / max(len(pairs), 1) if cfg.prompt_format == "chat" else None
    log(f"[dialogue] data: {len(pairs)} pairs from {source} ({cfg.split})"
        + (f", {turns:.1f} prompt turns on average" if turns else "") + f" ({time.perf_counter() - t:.0f}s)")
    if not pairs:
        raise ValueError(f"no dialogue pairs in {source} ({cfg.split}): {report}")
    return pairs


def _train_sections(cfg: DialogueConfig) -> dict[str, Any]:
    return {"data": {"max_length": cfg.max_length, "max_prompt_length": cfg.max_prompt_length, "truncate_prompt": True},
            "optim": {"batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum},
            "run": {"num_workers": cfg.num_workers, "use_gpu": cfg.use_gpu, "seed": cfg.seed}}


def stage_sft(cfg: DialogueConfig, pairs: list[dict[str, Any]], log: Any = print) -> str:
    """The SFT model: ``cfg.model`` itself (``sft_steps=0``), or SFT on the chosen responses of the first
    ``sft_examples`` pairs for ``sft_steps`` steps (``None``: one epoch). Returns a model path."""
    if cfg.sft_steps == 0:
        log(f"[dialogue] sft: using {cfg.model} as the SFT model")
        return cfg.model
    from sparsepo.config.schema import train_processes

    rows = [{"prompt": p["prompt"], "chosen": p["chosen"]} for p in pairs[: cfg.sft_examples]]
    steps = cfg.sft_steps or math.ceil(len(rows) / (cfg.batch_size * cfg.grad_accum * train_processes(cfg.num_workers)))
    return train_sft(rows, model=cfg.model, storage_path=cfg.storage_path, steps=steps, lr=cfg.sft_lr,
                     train=_train_sections(cfg), tag="dialogue", log=log)


def sweep_config(cfg: DialogueConfig, model: str, data_path: str):  # noqa: ANN201 - TrainConfig
    from sparsepo.config.schema import apply_overrides, from_dict

    return from_dict(apply_overrides(method_sweep_values(cfg, model, data_path), list(cfg.overrides)), where="dialogue")


def stage_sweep(cfg: DialogueConfig, model: str, pairs: list[dict[str, Any]], log: Any = print) -> dict[str, str]:
    """One trial per method on the first ``train_pairs`` pairs; ``{method: its final checkpoint}`` (failed
    trials are left out with a warning)."""
    from sparsepo.training.checkpoint import complete_checkpoints

    rows = pairs[: cfg.train_pairs]
    data = write_rows(local_cache(cfg.storage_path, "pairs") / f"dialogue-pairs-{cache_key(p=rows)}.jsonl", rows)
    log(f"[dialogue] sweep on {len(rows)} pairs")
    frame = run_method_sweep(cfg, sweep_config(cfg, model, publish(cfg.storage_path, cfg.name, data)), "loss", "min",
                             "dialogue", log)
    final: dict[str, str] = {}
    for method in cfg.methods:
        paths = frame.loc[frame[AXIS] == method, "trial_path"].unique()
        found = complete_checkpoints(f"{paths[0]}/train") if len(paths) else []
        if not found:
            log(f"[dialogue] warning: trial {method} has no checkpoint (failed?); left out of the table")
            continue
        final[method] = found[-1][1]
    return final


def leaderboard_spec(cfg: DialogueConfig) -> LeaderboardSpec:
    from sparsepo.evaluation.lm_eval_tasks import TASKS_DIR
    from sparsepo.experiments.dialogue.leaderboard import LeaderboardSpec

    batch: int | str = int(cfg.eval_batch_size) if cfg.eval_batch_size.isdigit() else cfg.eval_batch_size
    extra = {"enforce_eager": True} if cfg.eval_backend == "vllm" and not cfg.use_gpu else {}
    return LeaderboardSpec(tasks=tuple(cfg.eval_tasks), suite=cfg.eval_suite,
                           include_path=str(TASKS_DIR) if cfg.eval_local_tasks else None, limit=cfg.eval_limit,
                           chat_template=cfg.prompt_format == "chat", backend=cfg.eval_backend, batch_size=batch,
                           extra_model_args=extra, seed=cfg.seed)


def write_report(cfg: DialogueConfig, results: dict[str, dict[str, Any]], sft_model: str, n_pairs: int,
                 out: Path, elapsed_s: float) -> dict[str, Path]:
    from sparsepo.evaluation.openllm_scores import to_markdown
    from sparsepo.evaluation.report import interval_cells, settings_markdown
    from sparsepo.experiments.dialogue.leaderboard import table

    out.mkdir(parents=True, exist_ok=True)
    df = table(results, cfg.eval_suite, seed=cfg.seed)
    files = {"table": out / "table1.csv", "report": out / "report.md"}
    df.to_csv(files["table"])
    files["report"].write_text("\n".join([
        f"# Dialogue, helpfulness and harmlessness (paper Table 1): {cfg.name}",
        "",
        f"SFT model `{sft_model}` (first row); PO on {n_pairs} pairs of `{cfg.data}` ({cfg.split}); normalised "
        f"Open LLM Leaderboard scores (0-100, suite `{cfg.eval_suite}`"
        + (f", at most {cfg.eval_limit} documents per subtask" if cfg.eval_limit else "")
        + f") [95% bootstrap interval over documents]; wall time {elapsed_s:.0f} s.",
        "",
        to_markdown(interval_cells(df, float_format=".2f")),
        *settings_markdown(dataclasses.asdict(cfg)),
    ]))
    return files


def run_dialogue(cfg: DialogueConfig, log: Any = print) -> dict[str, Path]:
    """Run (or ``resume``) the whole experiment; returns the output files."""
    from sparsepo.experiments.dialogue.leaderboard import evaluate_models

    t0 = time.perf_counter()
    pairs = stage_data(cfg, log)
    sft_model = stage_sft(cfg, pairs, log)
    checkpoints = stage_sweep(cfg, sft_model, pairs, log)
    models = {"SFT": sft_model, **checkpoints}
    log(f"[dialogue] leaderboard: {len(models)} models on {', '.join(cfg.eval_tasks)}")
    results = evaluate_models(models, leaderboard_spec(cfg), local_cache(cfg.storage_path, "evals"),
                              use_gpu=cfg.use_gpu, log=log)
    out = output_dir(cfg.storage_path, cfg.name)
    files = write_report(cfg, results, sft_model, len(pairs[: cfg.train_pairs]), out, time.perf_counter() - t0)
    log(f"[dialogue] done in {time.perf_counter() - t0:.0f}s; report: {files['report']}")
    return files
