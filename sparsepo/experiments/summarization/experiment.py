"""Summary quality control (paper 3.4, Figure 5) as one reproducible experiment, in the shape of ``code``.

Stages, each printing its progress and caching what it makes under ``<storage>/`` keyed by what determines it:

1. ``data``: preference pairs, SFT rows and evaluation documents. Offline (no ``feedback_train``): the
   miniature built from the Pang & Lee reviews (``sparsepo.experiments.summarization.miniature``); on a
   cluster: TL;DR feedback by hub name or local file in its schema (``...summarization.tldr``: comparisons and
   binarised rated summaries, 100-word length filter, the evaluation documents drawn from the test pairs with
   their chosen summary as reference);
2. ``sft`` (``sft_steps > 0``): SFT of ``model`` on the SFT split; with ``sft_steps=0`` ``model`` is the SFT
   model (the paper: ``CarperAI/openai_summarize_tldr_sft``);
3. ``nli`` (``nli_model="standin"``, the default): the offline NLI stand-in for EDNA, built once (cached) on the
   driver before any evaluation (``sparsepo.evaluation.nli_standin``; the paper preset uses the SummaC model);
4. ``baseline``: the summarisation suite on the SFT model itself (the figure's "SFT" line);
5. ``sweep``: one Ray Tune trial per PO method (LoRA adapters when ``lora_r > 0``, over a 4-bit base with
   ``lora_quantize="nf4"``: the paper's QLoRA), each a Ray Train run from the SFT model whose evaluator runs the
   suite at every temperature at the last step (``SummarizationEvaluator``);
6. ``report``: ``figure5.csv``, ``figure5.png`` and ``report.md`` in ``<storage>/<name>/``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sparsepo.experiments.stages import (
    AXIS,
    cache_key,
    cached_baseline,
    last_evaluations,
    local_cache,
    method_sweep_values,
    output_dir,
    publish,
    run_method_sweep,
    train_sft,
    write_rows,
)

# Heavy modules (torch, pandas, matplotlib) load inside the stages: `sparsepo summarization --help` must not wait for them.

TAG = "summarization"
PAPER_METHODS = ("dpo", "tdpo1", "tdpo2", "mapo", "sparsepo")  # paper 3.4: representative baselines, MaPO, SparsePO
PAPER_SFT_MODEL = "CarperAI/openai_summarize_tldr_sft"  # GPT-J 6B fine-tuned on the TL;DR SFT split
PAPER_BERTSCORE = {"model": "roberta-large", "num_layers": 17, "idf": True}
TEMPLATE = "{document}\nTL;DR:"  # the suite's prompt layout, also the TL;DR SFT models' own


@dataclass(frozen=True)
class SummarizationConfig:
    """Everything the experiment depends on. Defaults: the offline miniature (SmolLM2-135M, Pang & Lee)."""

    model: str = "smollm2"
    sft_steps: int = 16
    sft_lr: float = 1e-4
    sft_data: str = ""  # SFT split: "" = the miniature's; or a file / hub name with prompt and label columns
    feedback_train: tuple[str, ...] = ()  # TL;DR feedback sources (file or <hub>:<subset>:<split>); () = miniature
    feedback_test: tuple[str, ...] = ()  # sources of the evaluation documents (their chosen summary: the reference)
    pairs_per_source: int | None = None  # pairs drawn from each training source (None: all)
    max_word_diff: int = 100  # drop pairs whose summaries differ by more words (appendix B.3)
    sft_docs: int = 48  # miniature split sizes (documents)
    pair_docs: int = 32
    eval_docs: int = 8
    methods: tuple[str, ...] = ("dpo", "sparsepo")
    beta: float = 0.1
    steps: int | None = 8
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 5e-4  # LoRA adapters on a miniature: a few steps must move the policy
    lora_r: int = 8  # 0: full fine-tuning
    lora_alpha: int = 16
    lora_quantize: Literal["none", "nf4", "fp4"] = "none"  # nf4: QLoRA (the paper's), the frozen base in 4 bits
    max_length: int = 160
    max_prompt_length: int = 112
    temperatures: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    eval_n: int = 4  # samples per document and temperature (the paper: 5)
    top_p: float = 0.5
    eval_tokens: int = 40
    nli_model: str | None = "standin"  # EDNA's NLI model: standin (offline stand-in), hub name or folder; none: off
    nli_standin: dict[str, Any] = field(default_factory=dict)  # stand-in build settings (StandinSettings); {}: defaults
    bertscore: dict[str, Any] | None = field(default_factory=dict)  # BERTScore args; {} = offline MiniLM-L6
    num_workers: int = 1
    use_gpu: bool = False
    max_concurrent_trials: int | None = None  # trials at once (default: what the cluster holds)
    storage_path: str = "runs"
    name: str = TAG
    resume: bool = False
    seed: int = 0
    backend: str = "hf"  # generation backend of the SFT baseline: hf, vllm or ray
    overrides: list[str] = field(default_factory=list)


def paper_config(cfg: SummarizationConfig) -> SummarizationConfig:
    """The paper's settings (for a GPU cluster): TL;DR feedback by hub name (20k pairs per subset; test
    documents from the held-out splits), the CarperAI SFT model (no SFT stage), DPO/TDPO v1/v2/MaPO/SparsePO with
    LoRA, 120 evaluation posts x 5 samples, BERTScore with RoBERTa-large + IDF, EDNA with the SummaC NLI model.
    Values the paper's text does not give (LoRA rank, lr, batch) are common QLoRA choices. ``cfg``'s storage and
    name are kept; a ``model`` other than the offline default is kept as the SFT model."""
    from sparsepo.evaluation.edna import DEFAULT_NLI_MODEL
    from sparsepo.experiments.summarization.tldr import PAPER_TEST, PAPER_TRAIN

    model = PAPER_SFT_MODEL if cfg.model == SummarizationConfig.model else cfg.model
    return dataclasses.replace(
        cfg, model=model, sft_steps=0, feedback_train=PAPER_TRAIN, feedback_test=PAPER_TEST,
        pairs_per_source=20000, eval_docs=120, methods=PAPER_METHODS, steps=None, batch_size=4, grad_accum=8,
        lr=5e-5, lora_r=16, lora_alpha=32, lora_quantize="nf4", max_length=640, max_prompt_length=512, eval_n=5,
        eval_tokens=64,
        nli_model=DEFAULT_NLI_MODEL, bertscore=dict(PAPER_BERTSCORE), use_gpu=True,
        backend="ray",  # vLLM engines on the cluster's GPUs: the head that runs the driver has none
    )


def feedback_data(cfg: SummarizationConfig) -> dict[str, Any]:
    """Pairs, SFT rows (from ``sft_data``, or none) and evaluation documents from TL;DR feedback sources."""
    import random

    from sparsepo.experiments.summarization.tldr import sample_pairs

    pairs = sample_pairs(cfg.feedback_train, cfg.pairs_per_source, cfg.seed, cfg.max_word_diff)
    test = sample_pairs(cfg.feedback_test, None, cfg.seed, cfg.max_word_diff)
    docs = list({p["document"]: {"id": p["id"], "document": p["document"], "reference": p["chosen"]}
                 for p in test}.values())
    docs = random.Random(cfg.seed).sample(docs, min(cfg.eval_docs, len(docs)))
    rows = [{"prompt": TEMPLATE.format(document=p["document"]), "chosen": " " + p["chosen"],
             "rejected": " " + p["rejected"], "id": p["id"]} for p in pairs]
    return {"pairs": rows, "sft": sft_split(cfg.sft_data) if cfg.sft_steps > 0 else [], "eval": docs}


def sft_split(source: str) -> list[dict[str, str]]:
    """SFT rows from a file or hub data set with ``prompt`` (ending in ``TL;DR:``) and ``label`` columns
    (the schema of ``CarperAI/openai_summarize_tldr``)."""
    from sparsepo.data.preference import PreferenceDataError, read_source_rows

    rows = []
    for r in read_source_rows(source):
        if isinstance(r.value, PreferenceDataError):
            raise r.value
        for key in ("prompt", "label"):
            value = r.value.get(key) if isinstance(r.value, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise PreferenceDataError(source, r.number, key, "missing or empty")
        rows.append({"prompt": r.value["prompt"], "completion": " " + r.value["label"].strip()})
    return rows


def stage_data(cfg: SummarizationConfig, log: Any = print) -> dict[str, Any]:
    """``{"pairs", "sft", "eval", "stats"}``: the miniature's splits, or TL;DR feedback (see the module doc)."""
    t = time.perf_counter()
    if cfg.feedback_train:
        data = feedback_data(cfg)
    else:
        from sparsepo.experiments.summarization.miniature import miniature_splits, preference_rows, sft_rows

        split = miniature_splits(cfg.sft_docs, cfg.pair_docs, cfg.eval_docs, cfg.seed)
        data = {"pairs": preference_rows(split["pairs"], TEMPLATE), "sft": sft_rows(split["sft"], TEMPLATE),
                "eval": split["eval"]}
    if not data["pairs"] or not data["eval"]:
        raise ValueError(f"[{TAG}] no preference pairs or no evaluation documents: check feedback_train/_test")
    data["stats"] = {"source": ", ".join(cfg.feedback_train) or "offline miniature (Pang & Lee review openings)",
                     "pairs": len(data["pairs"]), "sft_rows": len(data["sft"]), "eval_documents": len(data["eval"])}
    log(f"[{TAG}] data: {data['stats']} ({time.perf_counter() - t:.0f}s)")
    return data


def stage_sft(cfg: SummarizationConfig, rows: list[dict[str, str]], log: Any = print) -> str:
    """The SFT model: ``cfg.model`` itself (``sft_steps=0``) or an SFT run on ``rows`` (cached)."""
    if cfg.sft_steps <= 0:
        log(f"[{TAG}] sft: using {cfg.model} as the SFT model")
        return cfg.model
    train = {"data": {"max_length": cfg.max_length, "max_prompt_length": cfg.max_prompt_length, "truncate_prompt": True},
             "optim": {"batch_size": cfg.batch_size},
             "run": {"num_workers": cfg.num_workers, "use_gpu": cfg.use_gpu, "seed": cfg.seed}}
    return train_sft(rows, model=cfg.model, storage_path=cfg.storage_path, steps=cfg.sft_steps, lr=cfg.sft_lr,
                     train=train, tag=TAG, log=log)


def stage_nli(cfg: SummarizationConfig, log: Any = print) -> tuple[str | None, dict[str, Any] | None]:
    """EDNA's NLI model as the evaluators load it, and the stand-in's ``standin.json`` when it is the stand-in.

    ``nli_model="standin"``: the offline stand-in (``sparsepo.evaluation.nli_standin``) with ``cfg.nli_standin``
    settings, built here once (cached in ``$SPARSEPO_CACHE/models``) so that the trials' evaluators only load
    it; under a remote storage it is uploaded next to the pairs and the workers copy it to their node. ``none``
    or empty: ``(None, None)``, EDNA off. Any other name is passed on unchanged (hub name or folder)."""
    from sparsepo.evaluation.nli_standin import (
        STANDIN,
        nli_model_or_none,
        standin_info,
        standin_path,
        standin_settings,
    )

    name = nli_model_or_none(cfg.nli_model)
    if name != STANDIN:
        log(f"[{TAG}] nli: {name or 'none (EDNA not measured)'}")
        return name, None
    t = time.perf_counter()
    folder = standin_path(standin_settings(cfg.nli_standin), log=lambda line: log(f"[{TAG}] nli: {line}"))
    info = standin_info(folder)
    log(f"[{TAG}] nli: stand-in {folder}, held-out accuracy {info['test_accuracy']['overall']:.3f} "
        f"({time.perf_counter() - t:.0f}s)")
    return publish(cfg.storage_path, cfg.name, folder), info


def eval_args(cfg: SummarizationConfig, docs: list[dict[str, str]], nli_model: str | None) -> dict[str, Any]:
    """The evaluator's arguments (``nli_model``: what :func:`stage_nli` returned)."""
    return {"documents": [d["document"] for d in docs], "references": [d["reference"] for d in docs],
            "temperatures": list(cfg.temperatures), "n": cfg.eval_n, "top_p": cfg.top_p,
            "max_new_tokens": cfg.eval_tokens, "seed": cfg.seed, "prompt_template": TEMPLATE,
            "bertscore": cfg.bertscore, "nli_model": nli_model}


def edna_note(nli_model: str | None, standin: dict[str, Any] | None) -> str:
    """The report's sentence on where EDNA comes from."""
    if nli_model is None:
        return "EDNA not measured (no NLI model); its cells are empty."
    if standin is None:
        return f"EDNA with the NLI model `{nli_model}`."
    acc = standin["test_accuracy"]
    per_label = ", ".join(f"{k} {v:.2f}" for k, v in acc.items() if k != "overall")
    return ("EDNA comes from the offline NLI **stand-in**, not a real NLI model: MiniLM-L6 fine-tuned on synthetic "
            "Pang & Lee pairs (sparsepo/evaluation/nli_standin.py; premises never from the evaluation documents), "
            f"held-out accuracy {acc['overall']:.2f} ({per_label}). Compare its EDNA across methods, not with "
            "the paper's numbers.")


def stage_baseline(cfg: SummarizationConfig, model: str, args: dict[str, Any], log: Any = print) -> dict[str, float]:
    """The suite on the SFT model (no PO), cached by model and evaluation settings."""
    from sparsepo.experiments.summarization.evaluation import SummarizationEvaluator, metric_key

    t = time.perf_counter()
    metrics, cached = cached_baseline(cfg, model, args, TAG, lambda g: SummarizationEvaluator(**args).evaluate(g), log)
    if not cached:
        first = metric_key("rougeL_f1", cfg.temperatures[0])
        log(f"[{TAG}] baseline: ROUGE-L F1 {metrics.get(first, float('nan')):.3f} at T={cfg.temperatures[0]:g} "
            f"({time.perf_counter() - t:.0f}s)")
    return metrics


def sweep_config(cfg: SummarizationConfig, model: str, data_path: str, args: dict[str, Any]):  # noqa: ANN201
    from sparsepo.config.schema import apply_overrides, from_dict

    values = method_sweep_values(cfg, model, data_path, evaluator_args=args,
                                 evaluator="sparsepo.experiments.summarization.evaluation:SummarizationEvaluator")
    if cfg.lora_r > 0:
        values["lora"] = {"r": cfg.lora_r, "alpha": cfg.lora_alpha}
        if cfg.lora_quantize != "none":
            values["lora"]["quantize"] = cfg.lora_quantize
    return from_dict(apply_overrides(values, list(cfg.overrides)), where=TAG)


def stage_sweep(cfg: SummarizationConfig, model: str, data_path: str, args: dict[str, Any],
                log: Any = print) -> dict[str, dict[str, float]]:
    """One trial per method; ``{method: its last evaluation}`` (failed trials are left out with a warning)."""
    from sparsepo.experiments.summarization.evaluation import metric_key

    first = f"eval/{metric_key('rougeL_f1', cfg.temperatures[0])}"
    results = run_method_sweep(cfg, sweep_config(cfg, model, data_path, args), first, "max", TAG, log)
    return last_evaluations(results, AXIS, list(cfg.methods), first, TAG, log)


def run_summarization(cfg: SummarizationConfig, log: Any = print) -> dict[str, Path]:
    """Run (or ``resume``) the whole experiment; returns the output files (``table``, ``figure``, ``report``)."""
    from sparsepo.experiments.summarization.evaluation import figure5_table
    from sparsepo.experiments.summarization.report import write_report

    t0 = time.perf_counter()
    data = stage_data(cfg, log)
    model = stage_sft(cfg, data["sft"], log)
    key = cache_key(rows=data["pairs"])
    pairs = write_rows(local_cache(cfg.storage_path, "pairs") / f"{TAG}-pairs-{key}.jsonl", data["pairs"])
    nli_model, standin = stage_nli(cfg, log)
    args = eval_args(cfg, data["eval"], nli_model)
    rows = {"SFT": stage_baseline(cfg, model, args, log)}
    rows.update(stage_sweep(cfg, model, publish(cfg.storage_path, cfg.name, pairs), args, log))
    table = figure5_table(rows, cfg.temperatures)
    elapsed = time.perf_counter() - t0
    intro = (f"SFT model `{model}`; {cfg.eval_n} samples (top-p {cfg.top_p}) per evaluation document and temperature; "
             f"mean over documents (95% bootstrap CIs in figure5.csv); wall time {elapsed:.0f} s. ROUGE-L, "
             f"BERTScore and EDNA in [0, 1], self-BLEU in [0, 100]. {edna_note(nli_model, standin)}")
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()}
    files = write_report(output_dir(cfg.storage_path, cfg.name), table, title=f"Summary quality (paper Figure 5): "
                         f"{cfg.name}", intro=intro, data=data["stats"], settings=settings)
    log(f"[{TAG}] done in {elapsed:.0f}s; report: {files['report']}")
    return files
