"""The ``data:`` section of a training config. Apart from the readers (``sparsepo.data.preference``, which load
torch), so a config loads and is checked without it."""

from __future__ import annotations

from dataclasses import dataclass

from sparsepo.config.typed import spec


@dataclass(frozen=True)
class DataConfig:
    """Where pairs come from and how they are cut. Lengths count tokens."""

    path: str = ""  # JSON/JSONL/Parquet/CSV file, a datasets hub name, or offline:<name> (sparsepo.data.offline_pairs)
    split: str = "train"  # split of a hub data set
    max_length: int = spec(512, ge=2)  # prompt + response tokens; must exceed max_prompt_length
    max_prompt_length: int = spec(256, ge=1)
    truncate_prompt: bool = False  # keep a longer prompt's last max_prompt_length tokens (else: an error)
    skip_invalid: bool = False  # drop malformed rows, reporting each reason with its count (else: an error)
    limit: int | None = spec(None, ge=1)  # the first `limit` rows only
