"""Command line of the evaluation stage (``evals/run.py``): one sub-runner per suite, tidy outputs in ``<storage-path>/evals/<suite>/<system>`` (or ``--out``).

Every run writes its samples (JSONL), a tidy table (``results.csv``/``.parquet``, one row per system x metric x
setting, with bootstrap CIs) and ``results.md``; ``--compare DIR ...`` renders finished runs side by side.
Every setting is checked before any model loads or folder is made (``sparsepo/evaluation/settings.py``);
``--check`` stops there.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from sparsepo.config.flags import add_dataclass_flags, dataclass_from_args
from sparsepo.evaluation.settings import SUITES, EvalSettings, check, check_compare, pass_ks

__all__ = ["SUITES", "EvalSettings", "build_parser", "default_system_name", "main", "run"]

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


def _generator(settings: EvalSettings) -> Any:
    from sparsepo.generation import make_generator

    kw: dict[str, Any] = {}
    if settings.backend == "vllm" and settings.gpu_memory_utilization:
        kw = {"gpu_memory_utilization": settings.gpu_memory_utilization}
    return make_generator(settings.backend, settings.model, **kw)


def _sampling(settings: EvalSettings) -> Any:
    from sparsepo.generation import SamplingConfig

    return SamplingConfig(n=settings.n_samples, temperature=settings.temperature, top_p=settings.top_p,
                          max_new_tokens=settings.max_new_tokens, seed=settings.seed)


def run_sentiment(settings: EvalSettings, out: Path) -> Any:
    from sparsepo.evaluation.report import JsonlWriter
    from sparsepo.evaluation.reward_models import make_scorer
    from sparsepo.evaluation.sentiment import sample_and_score, summarise
    from sparsepo.experiments.sentiment.prompts import split_prompts
    from sparsepo.training.models import load_causal_lm, load_tokenizer

    s = settings
    tok = load_tokenizer(s.model)
    _, prompts = split_prompts(s.reviews, tok, 0, s.n_prompts, seed=s.seed)
    policy, ref = load_causal_lm(s.model), load_causal_lm(s.ref or s.model)
    scorer = make_scorer(s.reward, **({"model": s.reward_model} if s.reward_model else {}))
    samples = sample_and_score(_generator(s), policy, ref, tok, prompts, scorer, _sampling(s))
    with JsonlWriter(out / "samples.jsonl") as w:
        w.write_many(samples.to_dict("records"))
    setting = {"temperature": s.temperature, "n": s.n_samples, "reward": s.reward}
    return summarise(samples, s.system, setting)


def run_summarization(settings: EvalSettings, out: Path) -> Any:
    from sparsepo.evaluation.nli_standin import nli_model_or_none
    from sparsepo.evaluation.settings import summaries
    from sparsepo.evaluation.summarization import evaluate_summarization

    s = settings
    rows = summaries(s)  # checked before any model loaded; read again here, as the run uses them
    return evaluate_summarization(
        _generator(s), [r[s.document_field] for r in rows], [r[s.summary_field] for r in rows],
        temperatures=s.temperatures, n=s.n_samples, top_p=s.top_p, max_new_tokens=s.max_new_tokens,
        seed=s.seed, system=s.system, edna=nli_model_or_none(s.nli_model), out_dir=out,
    )


def run_code(settings: EvalSettings, out: Path) -> Any:
    from sparsepo.evaluation.code import evaluate_code, load_humaneval, load_mbpp
    from sparsepo.evaluation.report import aggregate_items

    s = settings
    problems = load_humaneval() if s.dataset == "humaneval" else load_mbpp(s.dataset, split=s.split)
    problems = problems[: s.limit or None]
    result = evaluate_code(_generator(s), problems, _sampling(s), ks=pass_ks(s), samples_path=out / "samples.jsonl")
    result.table.to_csv(out / "problems.csv", index=False)
    for note in result.summary.get("notes", []):
        print(f"note: {note}")
    return aggregate_items(result.items(s.system, "code"))


def run_openllm_suite(settings: EvalSettings, out: Path) -> Any:
    from sparsepo.evaluation.openllm import LEADERBOARD_TASKS, run_openllm
    from sparsepo.evaluation.openllm_scores import to_markdown
    from sparsepo.evaluation.report import tidy_frame

    s = settings
    tasks = list(s.tasks or LEADERBOARD_TASKS)
    table = run_openllm(
        s.model, s.backend, tasks=tasks, apply_chat_template=s.chat_template,
        batch_size=s.batch_size, limit=s.limit, include_path=s.include_path, output_dir=out, label=s.system,
    )
    print(to_markdown(table))
    long = table.reset_index(names="system").melt(id_vars="system", var_name="metric", value_name="value")
    long["suite"], long["setting"] = "openllm", "chat_template=" + str(s.chat_template)
    return tidy_frame(long.assign(ci_low=float("nan"), ci_high=float("nan"), n=len(tasks)))


RUNNERS = {"sentiment": run_sentiment, "summarization": run_summarization, "code": run_code, "openllm": run_openllm_suite}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo eval")
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--check", action="store_true", help="validate the settings, data and models; load no model, "
                    "write nothing")
    add_dataclass_flags(ap, EvalSettings)
    return ap


def resolve(settings: EvalSettings) -> EvalSettings:
    """The suite's ``--top-p`` when none was given (a value given is used as is) and the default ``--system``."""
    top_p = SUITE_TOP_P.get(settings.suite, 1.0) if settings.top_p is None else settings.top_p
    return dataclasses.replace(settings, top_p=top_p, system=settings.system or default_system_name(settings.model))


def run(args: argparse.Namespace) -> int:
    """The ``eval`` command on parsed arguments: every setting checked, then (without ``--check``) the suite."""
    settings = dataclass_from_args(EvalSettings, args)
    if settings.compare:
        check_compare(settings.compare)
        if args.check:
            print(f"[eval] check passed: {len(settings.compare)} result sources exist", flush=True)
            return 0
        from sparsepo.evaluation.report import compare_markdown

        print(compare_markdown(list(settings.compare)))
        return 0
    for line in check(settings):  # before any model loads or the output folder is made
        print(f"[eval] {line}", flush=True)
    if args.check:
        print("[eval] check passed: settings, data and models are valid", flush=True)
        return 0
    from sparsepo.evaluation.report import to_markdown, write_results

    settings = resolve(settings)
    out = Path(settings.out or Path(settings.storage_path) / "evals" / settings.suite / settings.system)
    out.mkdir(parents=True, exist_ok=True)
    table = RUNNERS[settings.suite](settings, out)
    files = write_results(table, out)
    print(to_markdown(table))
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from sparsepo.errors import run_cli

    return run_cli(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
