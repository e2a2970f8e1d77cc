"""Preference data: TRL-style rows -> validated, tokenised pairs -> padded concatenated batches.

A row has ``prompt``, ``chosen`` and ``rejected``: plain strings, or (conversational) lists of
``{"role", "content"}`` messages rendered with the tokenizer's chat template. Rows come from a local
JSON / JSONL / Parquet / CSV file or a ``datasets`` hub name. Bad rows raise :class:`PreferenceDataError`
naming the source, row (0-based index) and field; ``skip_invalid`` drops them and counts why.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from sparsepo.typed_config import spec

FIELDS = ("prompt", "chosen", "rejected")
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class PreferenceDataError(ValueError):
    """A malformed preference row; ``source``, ``row`` (0-based) and ``field`` say where."""

    def __init__(self, source: str, row: int, field: str, problem: str):
        super().__init__(f"{source}: row {row}, field '{field}': {problem}")
        self.source, self.row, self.field, self.problem = source, row, field, problem

    def __reduce__(self) -> tuple:  # picklable across Ray workers
        return (type(self), (self.source, self.row, self.field, self.problem))


@dataclass(frozen=True)
class DataConfig:
    """Where pairs come from and how they are cut. Lengths count tokens."""

    path: str = ""
    split: str = "train"
    max_length: int = spec(512, ge=2)
    max_prompt_length: int = spec(256, ge=1)
    truncate_prompt: bool = False
    skip_invalid: bool = False
    limit: int | None = spec(None, ge=1)


def read_rows(path: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a local JSON/JSONL/Parquet/CSV file, an ``offline:<name>`` set (``sparsepo.offline_pairs``), or of split
    ``split`` of a ``datasets`` hub data set."""
    if path.startswith("offline:"):
        from sparsepo.offline_pairs import offline_pairs

        return offline_pairs(path.removeprefix("offline:"))
    p = Path(path)
    if p.suffix in LOCAL_FORMATS or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"preference data file not found: {path}")
        if p.suffix not in LOCAL_FORMATS:
            raise ValueError(f"{path}: unsupported format {p.suffix!r}; use one of {sorted(LOCAL_FORMATS)}")
        if p.suffix in (".json", ".jsonl"):
            return _read_json(p)
        import pandas as pd

        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, keep_default_na=False)
        return df.to_dict("records")
    import datasets

    try:
        return list(datasets.load_dataset(path, split=split))
    except Exception as e:  # offline machines: say what to do instead
        raise FileNotFoundError(
            f"could not load preference data {path!r} (split {split!r}) as a local file or hub data set: {e}. "
            "Offline, pass a local .jsonl/.json/.parquet/.csv path."
        ) from e


def _read_json(p: Path) -> list[dict[str, Any]]:
    """A JSON array (or ``{"data": [...]}``) of row objects, or JSON lines; a row that is not an object is an error."""
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("["):  # meant as one JSON document: report where it breaks
            where = f"line {e.lineno}, column {e.colno}"
            raise PreferenceDataError(str(p), 0, "<json>", f"not valid JSON ({where}): {e.msg}") from e
        return _json_lines(p, text)
    data = data["data"] if isinstance(data, dict) and isinstance(data.get("data"), list) else data
    return _objects(p, data if isinstance(data, list) else [data])  # a single object is a one-line JSONL file


def _json_lines(p: Path, text: str) -> list[dict[str, Any]]:
    rows, lines = [], []
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PreferenceDataError(str(p), len(rows), "<json>", f"line {i + 1} is not valid JSON: {e}") from e
            lines.append(i + 1)
    return _objects(p, rows, lines)


def _objects(p: Path, rows: list[Any], lines: list[int] | None = None) -> list[dict[str, Any]]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            at = f" (line {lines[i]})" if lines else ""
            problem = f"expected an object with prompt/chosen/rejected{at}, got {type(row).__name__}"
            raise PreferenceDataError(str(p), i, "<json>", problem)
    return rows


def _is_messages(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in x)


def render(row: dict[str, Any], tokenizer: Any, source: str, i: int) -> tuple[str, str, str, bool]:
    """``(prompt, chosen, rejected, templated)`` as text; message lists go through the chat template."""
    for f in FIELDS:
        if f not in row or row[f] is None:
            raise PreferenceDataError(source, i, f, "missing")
        if not (isinstance(row[f], str) or _is_messages(row[f])):
            raise PreferenceDataError(
                source, i, f, f"must be a string or a list of {{role, content}} messages, got {type(row[f]).__name__}"
            )
    prompt = row["prompt"]
    if not _is_messages(prompt):
        for f in ("chosen", "rejected"):
            if not isinstance(row[f], str):
                raise PreferenceDataError(source, i, f, "is a message list but the prompt is plain text")
        return prompt, row["chosen"], row["rejected"], False
    if getattr(tokenizer, "chat_template", None) is None:
        raise PreferenceDataError(source, i, "prompt", "is a message list but the tokenizer has no chat template")
    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    responses = []
    for f in ("chosen", "rejected"):
        msgs = row[f] if _is_messages(row[f]) else [{"role": "assistant", "content": row[f]}]
        full = tokenizer.apply_chat_template(prompt + msgs, tokenize=False)
        if not full.startswith(head):
            raise PreferenceDataError(source, i, f, "chat template does not extend the rendered prompt")
        content = "".join(str(m["content"]) for m in msgs)
        responses.append(full[len(head) :] if content.strip() else "")
    return head, responses[0], responses[1], True


def tokenize_row(row: dict[str, Any], tokenizer: Any, cfg: DataConfig, source: str, i: int) -> dict[str, list[int]]:
    """Validate one row and tokenise it into ``prompt_ids``, ``chosen_ids``, ``rejected_ids``.

    The prompt keeps at most ``max_prompt_length`` tokens (longer prompts are an error unless
    ``truncate_prompt``, which keeps their end); each response is cut to ``max_length - len(prompt)`` tokens.
    Plain-text responses get the EOS token appended; templated ones end with the template's end of turn.
    """
    prompt, chosen, rejected, templated = render(row, tokenizer, source, i)
    for f, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.strip():
            raise PreferenceDataError(source, i, f, "empty response")
    if chosen == rejected:
        raise PreferenceDataError(source, i, "chosen", "identical to 'rejected'")
    prompt_ids = tokenizer(prompt, add_special_tokens=not templated)["input_ids"]
    if len(prompt_ids) > cfg.max_prompt_length:
        if not cfg.truncate_prompt:
            raise PreferenceDataError(
                source, i, "prompt", f"{len(prompt_ids)} tokens, longer than max_prompt_length={cfg.max_prompt_length}"
            )
        prompt_ids = prompt_ids[-cfg.max_prompt_length :]
    budget = cfg.max_length - len(prompt_ids)
    out = {"prompt_ids": prompt_ids}
    for f, text in (("chosen", chosen), ("rejected", rejected)):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not templated and tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        out[f"{f}_ids"] = ids[:budget]
    return out


@dataclass
class LoadReport:
    """How many rows were read and kept, and why the others were dropped (``skip_invalid``)."""

    source: str
    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        why = ", ".join(f"{n} {k}" for k, n in self.skipped.most_common())
        return f"{self.source}: kept {self.kept} of {self.read} pairs" + (f" (skipped: {why})" if why else "")


class PreferenceDataset(Dataset):
    """Tokenised pairs; item ``i`` is a dict of ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (lists of ints)."""

    def __init__(self, examples: list[dict[str, list[int]]]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.examples[i]


def load_preference_data(
    cfg: DataConfig, tokenizer: Any, rows: list[dict[str, Any]] | None = None
) -> tuple[PreferenceDataset, LoadReport]:
    """Read (unless ``rows`` is given), validate and tokenise preference pairs."""
    if cfg.max_length <= cfg.max_prompt_length:
        raise ValueError(f"max_length ({cfg.max_length}) must exceed max_prompt_length ({cfg.max_prompt_length})")
    rows = read_rows(cfg.path, cfg.split) if rows is None else rows
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    report, examples = LoadReport(cfg.path or "<rows>", read=len(rows)), []
    for i, row in enumerate(rows):
        try:
            if not isinstance(row, dict):
                raise PreferenceDataError(report.source, i, "<row>", f"must be an object, got {type(row).__name__}")
            examples.append(tokenize_row(row, tokenizer, cfg, report.source, i))
        except PreferenceDataError as e:
            if not cfg.skip_invalid:
                raise
            report.skipped[f"{e.field}: {e.problem.split(',')[0]}"] += 1
    report.kept = len(examples)
    if not examples:
        raise ValueError(f"{report}: no usable preference pairs")
    return PreferenceDataset(examples), report


@dataclass
class PreferenceCollator:
    """Pads a list of tokenised pairs into one concatenated batch of ``2B`` rows (chosen first, then rejected).

    Returns ``input_ids`` (2B, L) int64, ``attention_mask`` (2B, L) and ``loss_mask`` (2B, L): 1 where the
    token is part of the response (prompt and padding are 0). ``L`` is the longest row, rounded up to
    ``pad_to_multiple_of``.
    """

    pad_token_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, Tensor]:
        seqs = [(e["prompt_ids"], e["chosen_ids"]) for e in examples] + [
            (e["prompt_ids"], e["rejected_ids"]) for e in examples
        ]
        longest = max(len(p) + len(r) for p, r in seqs)
        m = self.pad_to_multiple_of
        length = -(-longest // m) * m
        ids = torch.full((len(seqs), length), self.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(seqs), length), dtype=torch.long)
        loss = torch.zeros((len(seqs), length), dtype=torch.long)
        for row, (p, r) in enumerate(seqs):
            n = len(p) + len(r)
            ids[row, :n] = torch.tensor(p + r, dtype=torch.long)
            attn[row, :n] = 1
            loss[row, len(p) : n] = 1
        return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss}
