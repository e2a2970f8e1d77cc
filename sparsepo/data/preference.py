"""Preference data: TRL-style rows -> validated, tokenised pairs -> padded concatenated batches.

A row has ``prompt``, ``chosen`` and ``rejected``: plain strings, or (conversational) lists of
``{"role", "content"}`` messages rendered with the tokenizer's chat template. Rows come from a local
JSON / JSONL / Parquet / CSV file or a ``datasets`` hub name. Bad rows raise :class:`PreferenceDataError`
naming the source, row and field; ``skip_invalid`` drops them (a JSON line that does not parse too) and
reports each reason with its count and first rows.

Rows are numbered from 1 as a user finds them in the file: in a JSON-lines file the row number is the line
number (blank lines count as lines); in a CSV file row 1 is the first data row, and messages add the line it
starts on; elsewhere (JSON array, Parquet, hub, rows given in memory) it is the 1-based position.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from sparsepo.config.typed import suggest
from sparsepo.data.config import DataConfig
from sparsepo.io import is_remote, iter_jsonl, local_copy

FIELDS = ("prompt", "chosen", "rejected")
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class PreferenceDataError(ValueError):
    """A malformed preference row; ``source``, ``row`` (1-based, see the module docstring; None for a whole
    file), ``line`` (CSV: where the row starts) and ``field`` say where. ``problem`` is the same for every row
    with this fault (skip reports group by it); ``detail`` is this row's particulars."""

    def __init__(
        self, source: str, row: int | None, field: str, problem: str, detail: str = "", line: int | None = None
    ):
        where = "" if row is None else f"row {row}" + (f" (line {line})" if line is not None else "") + ", "
        super().__init__(f"{source}: {where}field '{field}': {problem}" + (f"; {detail}" if detail else ""))
        self.source, self.row, self.field, self.problem, self.detail, self.line = source, row, field, problem, detail, line

    def __reduce__(self) -> tuple:  # picklable across Ray workers
        return (type(self), (self.source, self.row, self.field, self.problem, self.detail, self.line))

    def at_line(self, line: int | None) -> PreferenceDataError:
        """The same error, also naming the ``line`` the row starts on (no-op for None)."""
        if line is None:
            return self
        return PreferenceDataError(self.source, self.row, self.field, self.problem, self.detail, line)


@dataclass(frozen=True)
class SourceRow:
    """One row as read: its 1-based ``number`` (see the module docstring), the ``line`` it starts on (CSV
    only) and its ``value``: the row, or a :class:`PreferenceDataError` for a JSON line that does not parse."""

    number: int
    line: int | None
    value: Any


def read_rows(path: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a local JSON/JSONL/Parquet/CSV file, an ``offline:<name>`` set (``sparsepo.data.offline_pairs``), or of split
    ``split`` of a ``datasets`` hub data set. A broken JSON line or a row that is not an object is an error."""
    rows = []
    for r in read_source_rows(path, split):
        if isinstance(r.value, PreferenceDataError):
            raise r.value
        if not isinstance(r.value, dict):
            problem = f"expected an object with prompt/chosen/rejected, got {type(r.value).__name__}"
            raise PreferenceDataError(path, r.number, "<json>", problem)
        rows.append(r.value)
    return rows


def read_source_rows(path: str, split: str = "train") -> list[SourceRow]:
    """Like :func:`read_rows`, but every row with its number and line, and broken JSON lines as errors in place."""
    if path.startswith("offline:"):
        from sparsepo.data.offline_pairs import offline_pairs

        return _numbered(offline_pairs(path.removeprefix("offline:")))
    p = local_copy(path) if is_remote(path) else Path(path)  # published to remote storage: read on any node
    if p.suffix in LOCAL_FORMATS or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"preference data file not found: {path}")
        if p.suffix not in LOCAL_FORMATS:
            raise ValueError(f"{path}: unsupported format {p.suffix!r}; use one of {sorted(LOCAL_FORMATS)}")
        if p.suffix in (".json", ".jsonl"):
            return _read_json(p)
        import pandas as pd

        if p.suffix == ".parquet":  # pyarrow's own rows: list columns as lists (pandas gives numpy arrays)
            import pyarrow.parquet as pq

            return _numbered(pq.read_table(p).to_pylist())
        # CSV has no types: every cell is text ("5" stays "5", "" stays "")
        try:
            rows = pd.read_csv(p, keep_default_na=False, dtype=str).to_dict("records")
        except pd.errors.EmptyDataError:
            raise PreferenceDataError(path, None, "<file>", "empty CSV file (not even a header row)") from None
        starts = _csv_row_lines(p)
        return _numbered(rows, starts if len(starts) == len(rows) else None)
    import datasets

    try:
        return _numbered(list(datasets.load_dataset(path, split=split)))
    except Exception as e:  # offline machines: say what to do instead
        raise FileNotFoundError(
            f"could not load preference data {path!r} (split {split!r}) as a local file or hub data set: {e}. "
            "Offline, pass a local .jsonl/.json/.parquet/.csv path."
        ) from e


def _numbered(rows: list[Any], lines: list[int] | None = None) -> list[SourceRow]:
    return [SourceRow(i + 1, lines[i] if lines else None, row) for i, row in enumerate(rows)]


def _csv_row_lines(p: Path) -> list[int]:
    """The line each data row of a CSV file starts on (a quoted field may span lines; blank lines are skipped)."""
    starts, end = [], 0
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for record in reader:
            if record:
                starts.append(end + 1)
            end = reader.line_num
    return starts[1:]  # the header is not a row


def _read_json(p: Path) -> list[SourceRow]:
    """A JSON array (or ``{"data": [...]}``) of rows, a single object, or JSON lines (numbered by line)."""
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("["):  # meant as one JSON document: report where it breaks
            raise PreferenceDataError(str(p), None, "<json>", f"not valid JSON (line {e.lineno}, column {e.colno})",
                                      e.msg) from e
        return _json_lines(p, text)
    data = data["data"] if isinstance(data, dict) and isinstance(data.get("data"), list) else data
    return _numbered(data if isinstance(data, list) else [data])  # a single object is a one-line JSONL file


def _json_lines(p: Path, text: str) -> list[SourceRow]:
    rows: list[SourceRow] = []

    def broken(lineno: int, e: json.JSONDecodeError) -> None:
        error = PreferenceDataError(str(p), lineno, "<json>", "not valid JSON", f"{e.msg} (column {e.colno})")
        rows.append(SourceRow(lineno, None, error))

    for lineno, value in iter_jsonl(text, p, on_error=broken):
        rows.append(SourceRow(lineno, None, value))
    return rows


def _missing(name: str, row: dict[str, Any]) -> str:
    """The detail of a missing field: the columns the row has, and the closest to ``name``."""
    found = [str(k) for k in row]
    return f"the row has columns {found}{suggest(name, [k for k in found if k not in FIELDS])}"


def _is_messages(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in x)


def check_row(row: dict[str, Any], source: str, i: int) -> None:
    """The checks of one row that need no tokenizer: every field present, a string or a message list, and a plain
    prompt with plain responses; PreferenceDataError naming ``source``, row ``i`` and the field otherwise."""
    for f in FIELDS:
        if f not in row:
            raise PreferenceDataError(source, i, f, "missing", _missing(f, row))
        if row[f] is None:
            raise PreferenceDataError(source, i, f, "missing (null)")
        if not (isinstance(row[f], str) or _is_messages(row[f])):
            raise PreferenceDataError(
                source, i, f, f"must be a string or a list of {{role, content}} messages, got {type(row[f]).__name__}"
            )
    prompt = row["prompt"]
    if isinstance(prompt, list) and not prompt:  # the chat template has nothing to render
        raise PreferenceDataError(source, i, "prompt", "empty prompt (no messages)")
    if not _is_messages(prompt):
        for f in ("chosen", "rejected"):
            if not isinstance(row[f], str):
                raise PreferenceDataError(source, i, f, "is a message list but the prompt is plain text")


def render(row: dict[str, Any], tokenizer: Any, source: str, i: int) -> tuple[str, str, str, bool]:
    """``(prompt, chosen, rejected, templated)`` as text; message lists go through the chat template."""
    check_row(row, source, i)
    prompt = row["prompt"]
    if not _is_messages(prompt):
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
    if not prompt.strip() or not prompt_ids:
        # Position t predicts token t+1: with no prompt token, the first response token is never scored.
        raise PreferenceDataError(source, i, "prompt", "empty prompt")
    if len(prompt_ids) > cfg.max_prompt_length:
        if not cfg.truncate_prompt:
            raise PreferenceDataError(
                source, i, "prompt", f"longer than max_prompt_length={cfg.max_prompt_length}",
                f"{len(prompt_ids)} tokens",
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
    """How many rows were read and kept, and why the others were dropped (``skip_invalid``).

    ``skipped``: reason (``"field: problem"``) -> count; ``skipped_rows``: reason -> its row numbers, in order.
    """

    source: str
    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_rows: dict[str, list[int]] = field(default_factory=dict)

    SHOW_ROWS = 5  # row numbers shown per reason

    def skip(self, e: PreferenceDataError) -> None:
        reason = f"{e.field}: {e.problem}"
        self.skipped[reason] += 1
        self.skipped_rows.setdefault(reason, []).append(e.row)

    def __str__(self) -> str:
        head = f"{self.source}: kept {self.kept} of {self.read} pairs"
        if not self.skipped:
            return head
        why = []
        for reason, n in self.skipped.most_common():
            rows = self.skipped_rows.get(reason, [])
            shown = ", ".join(str(r) for r in rows[: self.SHOW_ROWS]) + (", ..." if len(rows) > self.SHOW_ROWS else "")
            why.append(f"{n} x [{reason}] (row{'s' if len(rows) > 1 else ''} {shown})")
        return f"{head}; skipped {sum(self.skipped.values())}: " + "; ".join(why)


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
    """Read (unless ``rows`` is given: numbered from 1), validate and tokenise preference pairs."""
    return load_examples(cfg, rows, LoadReport(cfg.path or "<rows>"), "preference pairs",
                         lambda row, number, source: tokenize_row(row, tokenizer, cfg, source, number))


def load_examples(
    cfg: DataConfig,
    rows: list[dict[str, Any]] | None,
    report: LoadReport,
    what: str,
    tokenize: Callable[[dict[str, Any], int, str], dict[str, list[int]]],
) -> tuple[PreferenceDataset, LoadReport]:
    """What every tokenised data set (preference pairs, SFT examples) shares: the length check,
    ``tokenize(row, number, source)`` over the rows (:func:`convert_rows`) and an error when nothing is left."""
    if cfg.max_length <= cfg.max_prompt_length:
        raise ValueError(f"max_length ({cfg.max_length}) must exceed max_prompt_length ({cfg.max_prompt_length})")
    examples = convert_rows(cfg.path, cfg.split, rows, cfg.limit, cfg.skip_invalid, report,
                            lambda row, number: tokenize(row, number, report.source))
    if not examples:
        raise ValueError(f"{report}: no usable {what}")
    return PreferenceDataset(examples), report


def convert_rows(
    path: str,
    split: str,
    rows: list[dict[str, Any]] | None,
    limit: int | None,
    skip_invalid: bool,
    report: LoadReport,
    convert: Callable[[dict[str, Any], int], Any],
) -> list[Any]:
    """``convert(row, number)`` for each row of ``path`` (or of ``rows``, numbered from 1), up to ``limit``.

    Every loader (preference pairs, SFT examples, HH transcripts) goes through here, so row numbers, lines,
    broken JSON lines and ``skip_invalid`` behave the same: a :class:`PreferenceDataError` is raised naming its
    row and line, or with ``skip_invalid`` counted in ``report`` (``read``/``kept`` are set here).
    """
    located = read_source_rows(path, split) if rows is None else _numbered(rows)
    if limit is not None:
        located = located[:limit]
    report.read, out = len(located), []
    for r in located:
        try:
            if isinstance(r.value, PreferenceDataError):
                raise r.value
            if not isinstance(r.value, dict):
                problem = f"must be an object, got {type(r.value).__name__}"
                raise PreferenceDataError(report.source, r.number, "<row>", problem)
            out.append(convert(r.value, r.number))
        except PreferenceDataError as e:
            if not skip_invalid:
                raise e.at_line(r.line) from None
            report.skip(e)
    report.kept = len(out)
    return out


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
