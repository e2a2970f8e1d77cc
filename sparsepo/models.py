"""Loading tokenizers and causal LMs from an alias, a local folder or a hub name, with clear errors offline."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sparsepo.assets import MODEL_ALIASES, resolve_model

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}


def _looks_local(name: str) -> bool:
    """A name the user meant as a path (hub names are `org/model`, never absolute or dotted)."""
    return os.path.isabs(name) or name.startswith(("./", "../", "~")) or os.path.exists(name)


def _source(name_or_path: str | os.PathLike, needed: tuple[str, ...]) -> str:
    """Resolve aliases and check a local folder holds one of the `needed` files up front, so errors name
    the path rather than falling through to the hub."""
    resolved = resolve_model(str(name_or_path))
    if not _looks_local(resolved):
        return resolved
    folder = Path(resolved).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"model path {folder} does not exist (or is not a folder)")
    if not any((folder / name).is_file() for name in needed):
        hint = (
            " (pass gguf_file= for a folder holding only a GGUF file)" if needed == ("config.json",) else ""
        )
        raise FileNotFoundError(f"model folder {folder} has no {' or '.join(needed)}{hint}")
    return str(folder)


def _hub_error(name: str, err: Exception) -> OSError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    return OSError(
        f"could not load {name!r}: it is not a local folder or alias ({', '.join(MODEL_ALIASES)}), and the "
        f"HF hub {'is disabled (HF_HUB_OFFLINE=1)' if offline else 'did not provide it'}. Pass a local folder "
        f"or an alias, or run where the hub is reachable. Cause: {type(err).__name__}: {err}"
    )


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Tokenizer for an alias / local folder / hub name, with a pad token (eos if it had none) and right padding."""
    source = _source(name_or_path, ("tokenizer_config.json", "tokenizer.json"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        if _looks_local(source):
            raise
        raise _hub_error(source, err) from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {source} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_causal_lm(
    name_or_path: str | os.PathLike,
    dtype: str = "float32",
    gguf_file: str | None = None,
    device: str | torch.device | None = None,
) -> PreTrainedModel:
    """Causal LM for an alias / local folder / hub name in `dtype` (float32, bfloat16, float16 or auto).

    `gguf_file` names a GGUF file inside the folder (de-quantised on load). `device` moves the model there.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    source = _source(name_or_path, (gguf_file,) if gguf_file else ("config.json",))
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype], **kwargs)
    except OSError as err:
        if _looks_local(source):
            raise
        raise _hub_error(source, err) from err
    if device is not None:
        model = model.to(device)
    return model
