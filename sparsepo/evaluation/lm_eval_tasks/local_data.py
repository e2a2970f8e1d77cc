"""``custom_dataset`` loader for the local tasks: JSONL files named relative to this folder.

lm-eval hands ``dataset_kwargs`` to a ``custom_dataset`` callable; datasets' own ``json`` builder would resolve a
relative ``data_files`` against the working directory, which breaks once the package is installed elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from sparsepo.evaluation.lm_eval_tasks import TASKS_DIR


def load_json(data_files: dict[str, str], **_: Any) -> datasets.DatasetDict:
    """Load ``{split: path}`` JSONL files; relative paths are taken from the ``lm_eval_tasks`` folder.

    Extra keyword arguments (lm-eval passes the task metadata too) are ignored.
    """
    resolved = {}
    for split, name in data_files.items():
        path = Path(name) if Path(name).is_absolute() else TASKS_DIR / name
        if not path.is_file():
            raise FileNotFoundError(f"local lm-eval task data file for split {split!r} not found: {path}")
        resolved[split] = str(path)
    return datasets.load_dataset("json", data_files=resolved)
