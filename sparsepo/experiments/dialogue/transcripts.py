"""Anthropic HH-RLHF transcripts -> conversational preference rows.

An HH row holds two whole transcripts, ``chosen`` and ``rejected``, each ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``
with any number of turns. Both share every turn but the last assistant response. A row becomes the TRL
conversational form the trainer reads: ``prompt`` = the shared turns as ``{"role", "content"}`` messages
(Human -> ``user``, Assistant -> ``assistant``), ``chosen`` / ``rejected`` = the last assistant turn of each.
A malformed transcript (no turn markers, text before the first marker, turns not alternating Human/Assistant,
not ending with a non-empty assistant response, chosen and rejected diverging before it) raises a
:class:`~sparsepo.data.preference.PreferenceDataError` naming the source, row and field and what is wrong.
"""

from __future__ import annotations

import re
from typing import Any

from sparsepo.data.preference import LoadReport, PreferenceDataError, convert_rows

HUB_NAME = "Anthropic/hh-rlhf"
ROLES = {"Human": "user", "Assistant": "assistant"}
_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def parse_transcript(text: Any, source: str = "<transcript>", row: int = 0, field: str = "transcript") -> list[dict[str, str]]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b..."`` -> ``[{"role": "user", "content": "a"}, {"role": "assistant", ...}]``.

    Turns must alternate, starting with Human; contents are stripped of surrounding whitespace. A turn may be
    empty except the last one, which must be the assistant's (the response being compared).
    """
    if not isinstance(text, str):
        raise PreferenceDataError(source, row, field, f"must be a transcript string, got {type(text).__name__}")
    # [before, role, content, role, content, ...]; a transcript may omit the blank lines before its first turn
    parts = _TURN.split("\n\n" + text if text.startswith(("Human:", "Assistant:")) else text)
    if len(parts) < 3:
        raise PreferenceDataError(source, row, field, "no '\\n\\nHuman:' / '\\n\\nAssistant:' turn markers")
    if parts[0].strip():
        raise PreferenceDataError(source, row, field, f"text before the first turn marker: {parts[0][:40]!r}")
    messages = []
    for k in range(1, len(parts), 2):
        role = ROLES[parts[k]]
        expected = "user" if not messages or messages[-1]["role"] == "assistant" else "assistant"
        if role != expected:
            turn = len(messages) + 1
            raise PreferenceDataError(
                source, row, field, f"turn {turn} is {parts[k]} but {'Human' if expected == 'user' else 'Assistant'} "
                "was expected (turns must alternate, starting with Human)"
            )
        messages.append({"role": role, "content": parts[k + 1].strip()})
    if messages[-1]["role"] != "assistant":
        raise PreferenceDataError(source, row, field, "does not end with an Assistant turn")
    if not messages[-1]["content"]:
        raise PreferenceDataError(source, row, field, "the last Assistant turn is empty")
    return messages


def hh_row_to_pair(row: Any, source: str = "<rows>", i: int = 0) -> dict[str, Any]:
    """One HH row (``chosen``/``rejected`` transcripts) -> ``{"prompt": messages, "chosen": [msg], "rejected": [msg]}``."""
    if not isinstance(row, dict):
        raise PreferenceDataError(source, i, "<row>", f"must be an object, got {type(row).__name__}")
    sides = {}
    for f in ("chosen", "rejected"):
        if row.get(f) is None:
            raise PreferenceDataError(source, i, f, "missing")
        sides[f] = parse_transcript(row[f], source, i, f)
    chosen, rejected = sides["chosen"], sides["rejected"]
    if chosen[:-1] != rejected[:-1]:
        turn = next((k for k, (a, b) in enumerate(zip(chosen[:-1], rejected[:-1], strict=False)) if a != b), None)
        at = f"at turn {turn + 1}" if turn is not None else f"in length ({len(chosen)} vs {len(rejected)} turns)"
        raise PreferenceDataError(source, i, "rejected", f"differs from 'chosen' before the last Assistant turn ({at})")
    if chosen[-1] == rejected[-1]:
        raise PreferenceDataError(source, i, "rejected", "its last Assistant turn is identical to 'chosen'")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def load_hh_pairs(
    source: str = HUB_NAME, split: str = "train", *, limit: int | None = None, skip_invalid: bool = False
) -> tuple[list[dict[str, Any]], LoadReport]:
    """Conversational pairs of an HH-RLHF split (hub name, or a local JSON/JSONL/Parquet/CSV file of the same
    schema); ``skip_invalid`` drops malformed rows and counts why in the report."""
    report = LoadReport(source)
    pairs = convert_rows(source, split, None, limit, skip_invalid, report, lambda row, n: hh_row_to_pair(row, source, n))
    return pairs, report
