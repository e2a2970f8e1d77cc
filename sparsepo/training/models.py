"""Loading tokenizers and causal LMs from an alias, a local folder, a storage URI (``s3://``, ``file://``: a
per-node local copy, see :func:`sparsepo.io.local_copy`) or a hub name, with clear errors offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sparsepo.assets import MODEL_ALIASES, resolve_model
from sparsepo.training.hardware import mixed_precision
from sparsepo.training.preference_model import disable_dropout

if TYPE_CHECKING:
    from sparsepo.config.schema import TrainConfig

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}


def _looks_local(name: str) -> bool:
    """A name the user meant as a path (hub names are `org/model`, never absolute or dotted)."""
    return os.path.isabs(name) or name.startswith(("./", "../", "~")) or os.path.exists(name)


def model_source(name_or_path: str | os.PathLike, needed: tuple[str, ...]) -> str:
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
    cause = (str(err).strip().splitlines() or [""])[0]
    # One line, ours last: Hugging Face's own message ends with "check your internet connection".
    return OSError(
        f"could not load {name!r} ({type(err).__name__}: {cause}): it is not a local folder or alias "
        f"({', '.join(MODEL_ALIASES)}), and the HF hub "
        f"{'is disabled (HF_HUB_OFFLINE=1)' if offline else 'did not provide it'}. Pass a local folder "
        "or an alias, or run where the hub is reachable."
    )


def check_model(flag: str, name: str) -> str:
    """``name`` (alias, local folder, storage URI or hub name) resolves to a model config and a tokenizer, without
    loading weights: the ``--check`` of every command that names a model. An error names ``flag`` and ``name``."""
    try:
        model_source(name, ("config.json",))
        load_tokenizer(name)
    except (OSError, ValueError) as err:
        raise type(err)(f"{flag} {name}: {err}") from err
    return f"{flag} {name}: resolves"


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Tokenizer for an alias / local folder / hub name, with a pad token (eos if it had none) and right padding."""
    source = model_source(name_or_path, ("tokenizer_config.json", "tokenizer.json"))
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


def quantization_config(kind: str, compute_dtype: torch.dtype) -> Any:
    """bitsandbytes 4-bit storage of QLoRA (Dettmers et al., 2023): ``kind`` ``nf4`` (NormalFloat, the paper's)
    or ``fp4``, blocks of 64 weights with double-quantised scales, matmuls in ``compute_dtype``."""
    import logging

    from transformers import BitsAndBytesConfig

    # Its CPU backend tries a hub kernel first and logs a warning when (offline, always) it falls back to its own.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=kind, bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def load_causal_lm(
    name_or_path: str | os.PathLike,
    dtype: str = "float32",
    gguf_file: str | None = None,
    device: str | torch.device | None = None,
    quantization: Any = None,
) -> PreTrainedModel:
    """Causal LM for an alias / local folder / hub name in `dtype` (float32, bfloat16, float16 or auto).

    `gguf_file` names a GGUF file inside the folder (de-quantised on load). `device` moves the model there.
    `quantization`: a transformers quantization config (:func:`quantization_config`): its layers load quantized,
    straight onto `device`.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    source = model_source(name_or_path, (gguf_file,) if gguf_file else ("config.json",))
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": str(device or "cpu")})
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype], **kwargs)
    except OSError as err:
        if _looks_local(source):
            raise
        raise _hub_error(source, err) from err
    if device is not None and quantization is None:
        model = model.to(device)
    return model


def build_policy(
    cfg: TrainConfig, device: torch.device, policy_dir: Path | None = None, adapter_dir: Path | None = None
) -> torch.nn.Module:
    """The trainable policy on ``device``: the config's model (resuming a full fine-tune: ``policy_dir``, the
    checkpoint's policy), wrapped in LoRA adapters when ``lora.r > 0`` (resuming: those in ``adapter_dir``) over
    a 4-bit base when ``lora.quantize`` says so (QLoRA), with every dropout off, LoRA's own included (see
    ``disable_dropout``)."""
    lora = cfg.lora.r > 0
    source = str(policy_dir) if policy_dir is not None and not lora else cfg.model.name
    quantization = None
    if cfg.lora.quantize != "none":
        compute = torch.bfloat16 if mixed_precision(device, cfg.optim.bf16) is not None else torch.float32
        quantization = quantization_config(cfg.lora.quantize, compute)
    policy = load_causal_lm(source, dtype=cfg.model.dtype, device=device, quantization=quantization,
                            gguf_file=None if source != cfg.model.name else cfg.model.gguf_file)
    if lora:
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
        from peft.utils import load_peft_weights

        policy = get_peft_model(
            policy,
            LoraConfig(
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=0.0,
                target_modules=cfg.lora.target_modules,
                task_type="CAUSAL_LM",
            ),
        )
        if adapter_dir is not None:
            set_peft_model_state_dict(policy, load_peft_weights(str(adapter_dir)))
    disable_dropout(policy)  # after get_peft_model, which adds its own lora_dropout modules
    return policy.to(device)


def merge_into_full_base(policy: nn.Module, adapter_dir: Path) -> nn.Module:
    """A QLoRA policy's adapters (saved in ``adapter_dir``) merged into its base loaded unquantised: merging into
    the 4-bit weights would requantise them, and the rounding (a step of the 4-bit grid) would swamp the small
    LoRA update. This is how QLoRA adapters are released; the result differs from the trained policy by the
    base's quantisation error only."""
    from peft import PeftModel

    dtype = str(policy.get_input_embeddings().weight.dtype).removeprefix("torch.")
    base = load_causal_lm(policy.peft_config["default"].base_model_name_or_path, dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
