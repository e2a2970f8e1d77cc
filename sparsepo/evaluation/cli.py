"""Command line of the evaluation stage (``evals/run.py``): one sub-runner per suite, tidy outputs in ``<storage-path>/evals/<suite>/<system>`` (or ``--out``).

Every run writes its samples (JSONL), a tidy table (``results.csv``/``.parquet``, one row per system x metric x
setting, with bootstrap CIs) and ``results.md``; ``--compare DIR ...`` renders finished runs side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

SUITES = ("sentiment", "summarization", "code", "openllm")
SUITE_TOP_P = {"summarization": 0.5}  # the paper's nucleus setting for summaries; 1.0 (off) elsewhere


def default_system_name(model: str) -> str:
    """A readable name for ``model`` in tables and output folders, unique per checkpoint.

    An alias stays itself; a trainer checkpoint ``.../<trial>/checkpoint_000012`` or its ``policy/`` folder
    becomes ``<trial>-checkpoint_000012``; another ``.../<name>/policy`` folder ``<name>``; any other local
    folder its name; a hub name ``org/model`` becomes ``org-model``.
    """
    from sparsepo.assets import MODEL_ALIASES
    from sparsepo.training.checkpoint import POLICY_DIR

    if model in MODEL_ALIASES:
        return model
    path = Path(model).expanduser()
    if not (path.is_absolute() or path.exists() or model.startswith(".")):
        return model.strip("/").replace("/", "-")  # a hub name
    path = path.resolve()
    if path.name == POLICY_DIR:
        path = path.parent
    return f"{path.parent.name}-{path.name}" if path.name.startswith("checkpoint_") else path.name


def _generator(a: argparse.Namespace) -> Any:
    from sparsepo.generation import make_generator

    kw: dict[str, Any] = {}
    if a.backend == "vllm":
        kw = {"gpu_memory_utilization": a.gpu_memory_utilization} if a.gpu_memory_utilization else {}
    return make_generator(a.backend, a.model, **kw)


def run_sentiment(a: argparse.Namespace, out: Path) -> Any:
    from sparsepo.evaluation.report import JsonlWriter
    from sparsepo.evaluation.reward_models import make_scorer
    from sparsepo.evaluation.sentiment import sample_and_score, summarise
    from sparsepo.experiments.sentiment.prompts import split_prompts
    from sparsepo.generation import SamplingConfig
    from sparsepo.training.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(a.model)
    _, prompts = split_prompts(a.reviews, tok, 0, a.n_prompts, seed=a.seed)
    policy, ref = load_causal_lm(a.model), load_causal_lm(a.ref or a.model)
    scorer = make_scorer(a.reward, **({"model": a.reward_model} if a.reward_model else {}))
    sampling = SamplingConfig(n=a.n_samples, temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens, seed=a.seed)
    samples = sample_and_score(_generator(a), policy, ref, tok, prompts, scorer, sampling)
    with JsonlWriter(out / "samples.jsonl") as w:
        w.write_many(samples.to_dict("records"))
    setting = {"temperature": a.temperature, "n": a.n_samples, "reward": a.reward}
    return summarise(samples, a.system, setting)


def run_summarization(a: argparse.Namespace, out: Path) -> Any:
    from sparsepo.data.preference import read_rows
    from sparsepo.evaluation.nli_standin import nli_model_or_none
    from sparsepo.evaluation.summarization import evaluate_summarization

    rows = read_rows(a.data, a.split)[: a.limit or None]
    for i, r in enumerate(rows, start=1):
        for f in (a.document_field, a.summary_field):
            if not isinstance(r.get(f), str):
                raise ValueError(f"{a.data}: row {i}, field '{f}': missing or not text")
    return evaluate_summarization(
        _generator(a), [r[a.document_field] for r in rows], [r[a.summary_field] for r in rows],
        temperatures=tuple(a.temperatures), n=a.n_samples, top_p=a.top_p, max_new_tokens=a.max_new_tokens,
        seed=a.seed, system=a.system, edna=nli_model_or_none(a.nli_model), out_dir=out,
    )


def run_code(a: argparse.Namespace, out: Path) -> Any:
    from sparsepo.evaluation.code import evaluate_code, load_humaneval, load_mbpp
    from sparsepo.evaluation.report import aggregate_items
    from sparsepo.generation import SamplingConfig

    problems = load_humaneval() if a.dataset == "humaneval" else load_mbpp(a.dataset, split=a.split)
    problems = problems[: a.limit or None]
    sampling = SamplingConfig(n=a.n_samples, temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens, seed=a.seed)
    result = evaluate_code(_generator(a), problems, sampling, ks=tuple(a.ks), samples_path=out / "samples.jsonl")
    result.table.to_csv(out / "problems.csv", index=False)
    for note in result.summary.get("notes", []):
        print(f"note: {note}")
    return aggregate_items(result.items(a.system, "code"))


def run_openllm_suite(a: argparse.Namespace, out: Path) -> Any:
    from sparsepo.evaluation.openllm import LEADERBOARD_TASKS, run_openllm
    from sparsepo.evaluation.openllm_scores import to_markdown

    table = run_openllm(
        a.model, a.backend, tasks=a.tasks or LEADERBOARD_TASKS, apply_chat_template=a.chat_template,
        batch_size=a.batch_size, limit=a.limit, include_path=a.include_path, output_dir=out, label=a.system,
    )
    print(to_markdown(table))
    long = table.reset_index(names="system").melt(id_vars="system", var_name="metric", value_name="value")
    long["suite"], long["setting"] = "openllm", "chat_template=" + str(a.chat_template)
    from sparsepo.evaluation.report import tidy_frame

    return tidy_frame(long.assign(ci_low=float("nan"), ci_high=float("nan"), n=len(a.tasks or LEADERBOARD_TASKS)))


RUNNERS = {"sentiment": run_sentiment, "summarization": run_summarization, "code": run_code, "openllm": run_openllm_suite}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo eval")
    ap.description = __doc__
    ap.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    ap.add_argument("--suite", choices=SUITES)
    ap.add_argument("--compare", nargs="+", metavar="RESULTS", help="result folders/files to show side by side")
    ap.add_argument("--model", help="hub name, local folder (a trainer checkpoint's policy/) or offline alias")
    ap.add_argument("--ref", help="reference model for KL (sentiment; default: --model)")
    ap.add_argument("--system", help="name of the system in the tables (default: from --model, e.g. "
                    "<trial>-checkpoint_000012 for a checkpoint's policy/, or the alias)")
    ap.add_argument("--backend", default="hf", choices=["hf", "vllm", "ray"])
    ap.add_argument("--gpu-memory-utilization", type=float, default=None, help="vLLM's share of device memory")
    ap.add_argument("--storage-path", default="runs", help="root of run outputs: results go to <root>/evals/<suite>/<system>")
    ap.add_argument("--out", default=None, help="exact output folder instead of the one under --storage-path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-samples", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=None, help="nucleus sampling (default: 0.5 for summarization, "
                    "the paper's setting; 1.0 otherwise)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--limit", type=int, default=None, help="first N problems / documents / lm-eval docs per task")
    g = ap.add_argument_group("sentiment")
    g.add_argument("--reviews", default="pang-lee", help="pang-lee (offline), imdb, or a file with a text column")
    g.add_argument("--n-prompts", type=int, default=32)
    g.add_argument("--reward", default="vader", choices=["vader", "hf"])
    g.add_argument("--reward-model", default=None, help="HF sentiment classifier name or path (--reward hf)")
    g = ap.add_argument_group("summarization")
    g.add_argument("--data", help="documents with reference summaries: local file or hub name")
    g.add_argument("--split", default="test")
    g.add_argument("--document-field", default="document")
    g.add_argument("--summary-field", default="summary")
    g.add_argument("--temperatures", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    g.add_argument("--nli-model", default=None, help="NLI model for EDNA (name or path; 'standin': the offline "
                   "stand-in of sparsepo/evaluation/nli_standin.py, not a real NLI model); EDNA skipped if absent or 'none'")
    g = ap.add_argument_group("code")
    g.add_argument("--dataset", default="humaneval", help="humaneval (offline), mbpp, or a local MBPP-format file")
    g.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100])
    g = ap.add_argument_group("openllm")
    g.add_argument("--tasks", nargs="+", default=None, help="lm-eval tasks (default: the six leaderboard v2 tasks)")
    g.add_argument("--chat-template", action="store_true", help="apply the chat template (IFEval)")
    g.add_argument("--batch-size", default=1)
    g.add_argument("--include-path", default=None, help="folder of extra lm-eval task YAMLs")
    return ap


def run(a: argparse.Namespace) -> int:
    """The ``eval`` command on parsed arguments."""
    from sparsepo.evaluation.report import compare_markdown, to_markdown, write_results

    if a.compare:
        print(compare_markdown(a.compare))
        return 0
    if not a.suite or not a.model:
        raise ValueError("give --suite and --model (or --compare RESULTS ...)")
    for flag, name in (("--model", a.model), ("--ref", getattr(a, "ref", None))):
        if name and (Path(name).is_absolute() or name.startswith((".", "~"))) and not Path(name).expanduser().exists():
            raise FileNotFoundError(f"{flag} {name}: no such folder")  # before the output folder is made
    if a.suite == "summarization" and not a.data:  # before any folder is made or model loaded
        raise ValueError("--suite summarization needs --data (a local JSONL/CSV/Parquet file or a hub data set name)")
    if a.top_p is None:  # unset: the suite's default; a value the user gave is used as given
        a.top_p = SUITE_TOP_P.get(a.suite, 1.0)
    a.system = a.system or default_system_name(a.model)
    out = Path(a.out or Path(a.storage_path) / "evals" / a.suite / a.system)
    out.mkdir(parents=True, exist_ok=True)
    table = RUNNERS[a.suite](a, out)
    files = write_results(table, out)
    print(to_markdown(table))
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from sparsepo.errors import run_cli

    return run_cli(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
