"""The settings of ``sparsepo eval`` (its flags are generated from :class:`EvalSettings`) and the checks that refuse
a bad one before any model loads or output folder is made.

Types, choices and ranges are checked when the flags are read (:func:`sparsepo.config.flags.dataclass_from_args`);
:func:`check` then looks at what the settings point to, cheapest first: the suite's data file (every row used has
its fields), ``--ks`` against ``--n-samples``, and last the models, which must resolve to a tokenizer and a config
(this loads transformers, not a model). Nothing here imports torch at import time: ``--help`` builds on it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from typing import Any, Literal

from sparsepo.config.typed import ConfigError, spec

SUITES = ("sentiment", "summarization", "code", "openllm")
Suite = Literal["sentiment", "summarization", "code", "openllm"]
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".gz")  # a name ending so is a file, never a hub name
BATCH_SIZE = re.compile(r"^auto(:\d+)?$")  # lm-eval's automatic batch size (auto:N: re-chosen N times)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """One evaluation: the suite, the model, sampling, and each suite's own inputs (``--help`` groups them)."""

    suite: Suite | None = spec(None, help="the suite to run (or --compare finished runs)")
    compare: tuple[str, ...] = spec((), help="result folders/files to show side by side")
    model: str | None = spec(None, help="hub name, local folder (a trainer checkpoint's policy/) or offline alias")
    ref: str | None = spec(None, help="reference model for KL (sentiment; default: --model)")
    system: str | None = spec(None, help="name of the system in the tables (default: from --model, e.g. "
                              "<trial>-checkpoint_000012 for a checkpoint's policy/, or the alias)")
    backend: Literal["hf", "vllm", "ray"] = spec("hf", help="generation backend")
    gpu_memory_utilization: float | None = spec(None, gt=0, le=1, help="vLLM's share of device memory")
    storage_path: str = spec("runs", help="root of run outputs: results go to <root>/evals/<suite>/<system>")
    out: str | None = spec(None, help="exact output folder instead of the one under --storage-path")
    seed: int = spec(0, help="sampling and prompt-selection seed")
    n_samples: int = spec(1, ge=1, help="samples per prompt / problem / document")
    temperature: float = spec(1.0, ge=0, help="sampling temperature (0: greedy)")
    top_p: float | None = spec(None, gt=0, le=1, help="nucleus sampling (default: 0.5 for summarization, the "
                               "paper's setting; 1.0 otherwise)")
    max_new_tokens: int = spec(48, ge=1, help="tokens generated per sample at most")
    limit: int | None = spec(None, ge=1, help="first N problems / documents / lm-eval docs per task")
    reviews: str = spec("pang-lee", group="sentiment", help="pang-lee (offline), imdb, or a file with a text column")
    n_prompts: int = spec(32, ge=1, group="sentiment", help="held-out review prompts")
    reward: Literal["vader", "hf"] = spec("vader", group="sentiment", help="sentiment scorer")
    reward_model: str | None = spec(None, group="sentiment", help="HF sentiment classifier name or path "
                                    "(--reward hf; default: siebert/sentiment-roberta-large-english)")
    data: str | None = spec(None, group="summarization",
                            help="documents with reference summaries: local file or hub name")
    split: str = spec("test", group="summarization", help="split of --data (and of an MBPP --dataset)")
    document_field: str = spec("document", group="summarization", help="field of --data holding the document")
    summary_field: str = spec("summary", group="summarization", help="field of --data holding its reference summary")
    temperatures: tuple[float, ...] = spec((0.25, 0.5, 0.75, 1.0), ge=0, group="summarization",
                                           help="one set of summaries per temperature")
    nli_model: str | None = spec(None, group="summarization", help="NLI model for EDNA (name or path; 'standin': "
                                 "the offline stand-in of sparsepo/evaluation/nli_standin.py, not a real NLI model); "
                                 "EDNA skipped if absent or 'none'")
    dataset: str = spec("humaneval", group="code", help="humaneval (offline), mbpp, or a local MBPP-format file")
    ks: tuple[int, ...] | None = spec(None, ge=1, group="code", help="pass@k for each k, each <= --n-samples "
                                      "(default: those of 1 10 100 that are <= --n-samples)")
    tasks: tuple[str, ...] | None = spec(None, group="openllm",
                                         help="lm-eval tasks (default: the six leaderboard v2 tasks)")
    chat_template: bool = spec(False, group="openllm", help="apply the chat template (IFEval)")
    batch_size: int | str = spec(1, group="openllm", help="lm-eval batch size: N >= 1, auto or auto:N")
    include_path: str | None = spec(None, group="openllm", help="folder of extra lm-eval task YAMLs")

    def __post_init__(self) -> None:
        # int | str: the range check of spec() cannot compare 'auto' with 1, so it is done here.
        bs = self.batch_size
        if isinstance(bs, bool) or not (isinstance(bs, int) and bs >= 1 or isinstance(bs, str) and BATCH_SIZE.match(bs)):
            raise ConfigError(f"flags: batch_size: expected an integer >= 1, 'auto' or 'auto:N', got {bs!r}")


def looks_local(name: str) -> bool:
    """Whether ``name`` can only be a local path (absolute, ``./``, ``~``, or a data-file suffix), not a hub name."""
    return name.startswith(("/", ".", "~")) or Path(name).suffix.lower() in FILE_SUFFIXES


def check(settings: EvalSettings) -> list[str]:
    """Every setting checked against what it points to, before any model loads; one line per finding.

    Raises ConfigError, FileNotFoundError, OSError or ValueError (the data's own errors name file, row and field).
    """
    s = settings
    if not s.suite or not s.model:
        raise ConfigError("give --suite and --model (or --compare RESULTS ...)")
    found = models(s)
    for flag, name in found:  # a missing folder: refused before torch and transformers import
        if looks_local(name) and not Path(name).expanduser().exists():
            raise FileNotFoundError(f"{flag} {name}: no such folder")
    if s.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("--backend vllm: vllm is not installed here (use --backend hf)")
    lines = SUITE_CHECKS[s.suite](s)
    from sparsepo.training.models import check_model  # transformers: after every cheap check

    return lines + [check_model(flag, name) for flag, name in found]


def models(s: EvalSettings) -> list[tuple[str, str]]:
    """(flag, name) of every model the run loads: the policy, the sentiment scorer of --reward hf, a real NLI model
    of summarization, and --ref wherever it is given."""
    from sparsepo.evaluation.nli_standin import STANDIN, nli_model_or_none
    from sparsepo.evaluation.reward_models import DEFAULT_HF_MODEL

    found = [("--model", s.model)]
    if s.ref and s.ref != s.model:  # used by sentiment only, but a missing one is a mistake anywhere
        found.append(("--ref", s.ref))
    if s.suite == "sentiment" and s.reward == "hf":
        found.append(("--reward-model", s.reward_model or DEFAULT_HF_MODEL))
    nli = nli_model_or_none(s.nli_model)
    if s.suite == "summarization" and nli and nli != STANDIN:  # the stand-in is built on first use, offline
        found.append(("--nli-model", nli))
    return found


def check_sentiment(s: EvalSettings) -> list[str]:
    """A reviews file has a non-empty ``text`` in every row and enough reviews for ``--n-prompts``."""
    if s.reward_model and s.reward != "hf":
        raise ConfigError(f"--reward-model {s.reward_model} is only used with --reward hf (got --reward {s.reward})")
    if s.reviews == "pang-lee" or not (looks_local(s.reviews) or Path(s.reviews).exists()):
        return [f"--reviews {s.reviews}: read when the run starts"]
    if not Path(s.reviews).expanduser().is_file():
        raise FileNotFoundError(f"--reviews {s.reviews}: no such file")
    from sparsepo.experiments.sentiment.prompts import load_review_texts

    texts = load_review_texts(str(Path(s.reviews).expanduser()))  # names file, row and field 'text'
    if len(texts) < s.n_prompts:
        raise ConfigError(f"--n-prompts {s.n_prompts}: {s.reviews} has only {len(texts)} reviews")
    return [f"--reviews {s.reviews}: {len(texts)} reviews with text"]


def summaries(s: EvalSettings) -> list[dict[str, Any]]:
    """The first ``--limit`` rows of ``--data``, each with text in ``--document-field`` and ``--summary-field``."""
    if not s.data:
        raise ConfigError("--suite summarization needs --data (a local JSONL/CSV/Parquet file or a hub data set name)")
    if looks_local(s.data) and not Path(s.data).expanduser().is_file():
        raise FileNotFoundError(f"--data {s.data}: no such file")
    # imports torch: after the cheap checks, so a missing file is refused in well under a second
    from sparsepo.data.preference import PreferenceDataError, read_source_rows

    rows = read_source_rows(str(Path(s.data).expanduser()) if looks_local(s.data) else s.data, s.split)
    kept = []
    for r in rows[: s.limit or None]:
        if isinstance(r.value, PreferenceDataError):  # a broken JSON line
            raise r.value
        for field in (s.document_field, s.summary_field):
            value = r.value.get(field) if isinstance(r.value, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise PreferenceDataError(s.data, r.number, field, "missing or not text", line=r.line)
        kept.append(r.value)
    if not kept:
        raise ValueError(f"--data {s.data}: no rows")
    return kept


def check_summarization(s: EvalSettings) -> list[str]:
    return [f"--data {s.data}: {len(summaries(s))} documents with summaries"]


DEFAULT_KS = (1, 10, 100)


def pass_ks(s: EvalSettings) -> tuple[int, ...]:
    """The k of pass@k: ``--ks`` as given, else those of :data:`DEFAULT_KS` that ``--n-samples`` allows."""
    return s.ks or tuple(k for k in DEFAULT_KS if k <= s.n_samples)


def check_code(s: EvalSettings) -> list[str]:
    """pass@k needs k <= n samples; ``--dataset`` is humaneval, an MBPP name of a known split, or a readable file."""
    too_big = [k for k in s.ks or () if k > s.n_samples]
    if too_big:
        raise ConfigError(f"--ks {' '.join(map(str, too_big))}: pass@k needs --n-samples >= k, got --n-samples "
                          f"{s.n_samples} (pass --n-samples {max(too_big)} or smaller --ks)")
    if s.dataset == "humaneval":
        return ["--dataset humaneval: the offline asset"]
    path = Path(s.dataset).expanduser()
    if not (s.dataset == "mbpp" or ("/" in s.dataset and not looks_local(s.dataset)) or path.exists()):
        raise FileNotFoundError(f"--dataset {s.dataset}: not humaneval, mbpp, a hub name or an existing file")
    from sparsepo.evaluation.code import MBPP_SPLITS, load_mbpp  # pandas: after the cheap checks

    if s.split not in MBPP_SPLITS:
        raise ConfigError(f"--split {s.split}: MBPP splits are {', '.join(MBPP_SPLITS)}")
    if path.is_file():
        return [f"--dataset {s.dataset}: {len(load_mbpp(path, split=s.split))} problems in split {s.split}"]
    return [f"--dataset {s.dataset}: read when the run starts"]


def check_openllm(s: EvalSettings) -> list[str]:
    if s.include_path and not Path(s.include_path).expanduser().is_dir():
        raise FileNotFoundError(f"--include-path {s.include_path}: no such folder")
    return []


SUITE_CHECKS = {"sentiment": check_sentiment, "summarization": check_summarization, "code": check_code,
                "openllm": check_openllm}


def check_compare(paths: tuple[str, ...]) -> None:
    """Every ``--compare`` source exists (its format is read when the table is rendered)."""
    for p in paths:
        if not Path(p).expanduser().exists():
            raise FileNotFoundError(f"--compare {p}: no such file or folder")
