"""The SFT stage: supervised fine-tuning on single prompt/response sequences, in the same Ray Train loop as PO.

Rows, TRL-style, any of:

- ``prompt`` + ``completion``: strings, or (conversational) a message list and an assistant reply;
- ``messages``: a conversation; the **last** assistant turn is the response and every turn before it the
  prompt (earlier assistant turns are context, not targets: one target per row, as in the PO stage that follows);
- ``prompt`` + ``chosen`` (+ ``rejected``): a preference row; the chosen side is the response.

The objective is the registered ``sft`` loss (``sparsepo.objectives.losses.sft``): the response tokens' negative
log-likelihood, prompt tokens excluded. The run's checkpoint ``policy/`` folder is the reference (and starting
policy) of the PO stage: ``model.name=<ckpt>/policy`` (``model.ref`` defaults to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sparsepo.data.preference import (
    DataConfig,
    LoadReport,
    PreferenceDataError,
    PreferenceDataset,
    convert_rows,
    render,
)
from sparsepo.objectives.losses import TokenStats, get_loss
from sparsepo.training.forward import token_stats

# Where each row kind keeps its prompt and response (the fields errors name).
ROW_KINDS = {"messages": ("messages", "messages"), "completion": ("prompt", "completion"), "chosen": ("prompt", "chosen")}


def is_sequence_objective(method: str) -> bool:
    """True for objectives trained on single sequences (SFT) rather than preference pairs."""
    return get_loss(method).inputs == "sequences"


def split_row(row: Any, source: str, i: int) -> tuple[Any, Any, str, str]:
    """``(prompt, response, prompt_field, response_field)`` of one SFT row of any supported kind."""
    if not isinstance(row, dict):
        raise PreferenceDataError(source, i, "<row>", f"must be an object, got {type(row).__name__}")
    kind = next((k for k in ROW_KINDS if row.get(k) is not None), None)
    if kind is None:
        raise PreferenceDataError(
            source, i, "<row>", f"needs 'messages', 'prompt'+'completion' or 'prompt'+'chosen'; has {sorted(row)}"
        )
    prompt_field, response_field = ROW_KINDS[kind]
    if kind != "messages":
        if row.get("prompt") is None:
            raise PreferenceDataError(source, i, "prompt", "missing")
        return row["prompt"], row[kind], prompt_field, response_field
    msgs = row["messages"]
    if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
        raise PreferenceDataError(source, i, "messages", "must be a list of {role, content} messages")
    if not msgs or msgs[-1]["role"] != "assistant":
        raise PreferenceDataError(source, i, "messages", "must end with an assistant turn (the response)")
    if len(msgs) < 2:
        raise PreferenceDataError(source, i, "messages", "needs at least one turn before the assistant's response")
    return msgs[:-1], msgs[-1:], "messages", "messages"


def tokenize_sft_row(row: Any, tokenizer: Any, cfg: DataConfig, source: str, i: int) -> dict[str, list[int]]:
    """One row -> ``prompt_ids`` and ``response_ids``, cut as in ``sparsepo.data.preference.tokenize_row`` (prompt at most
    ``max_prompt_length`` tokens, or its end with ``truncate_prompt``; response cut to fill ``max_length``)."""
    prompt, response, prompt_field, response_field = split_row(row, source, i)
    try:  # the preference renderer: same chat-template handling and checks as the PO stage's rows
        prompt_text, response_text, _, templated = render(
            {"prompt": prompt, "chosen": response, "rejected": response}, tokenizer, source, i
        )
    except PreferenceDataError as e:
        field = prompt_field if e.field == "prompt" else response_field
        raise PreferenceDataError(source, i, field, e.problem) from None
    if not response_text.strip():
        raise PreferenceDataError(source, i, response_field, "empty response")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=not templated)["input_ids"]
    if len(prompt_ids) > cfg.max_prompt_length:
        if not cfg.truncate_prompt:
            raise PreferenceDataError(
                source, i, prompt_field, f"{len(prompt_ids)} tokens, longer than max_prompt_length={cfg.max_prompt_length}"
            )
        prompt_ids = prompt_ids[-cfg.max_prompt_length :]
    ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    if not templated and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]  # the model must learn to stop
    return {"prompt_ids": prompt_ids, "response_ids": ids[: cfg.max_length - len(prompt_ids)]}


class SFTLoadReport(LoadReport):
    def __str__(self) -> str:
        return super().__str__().replace(" pairs", " SFT examples", 1)


def load_sft_data(
    cfg: DataConfig, tokenizer: Any, rows: list[dict[str, Any]] | None = None
) -> tuple[PreferenceDataset, LoadReport]:
    """Read (unless ``rows`` is given), validate and tokenise SFT rows; items hold ``prompt_ids``/``response_ids``."""
    if cfg.max_length <= cfg.max_prompt_length:
        raise ValueError(f"max_length ({cfg.max_length}) must exceed max_prompt_length ({cfg.max_prompt_length})")
    report = SFTLoadReport(cfg.path or "<rows>")
    examples = convert_rows(
        cfg.path, cfg.split, rows, cfg.limit, cfg.skip_invalid, report,
        lambda row, number: tokenize_sft_row(row, tokenizer, cfg, report.source, number),
    )
    if not examples:
        raise ValueError(f"{report}: no usable SFT examples")
    return PreferenceDataset(examples), report


@dataclass
class SFTCollator:
    """Pads tokenised SFT examples into ``input_ids``, ``attention_mask`` and ``loss_mask``, each ``(B, L)``;
    ``loss_mask`` is 1 on response tokens only (the batch layout of one side of a ``PreferenceCollator`` batch)."""

    pad_token_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, Tensor]:
        m = self.pad_to_multiple_of
        length = -(-max(len(e["prompt_ids"]) + len(e["response_ids"]) for e in examples) // m) * m
        ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(examples), length), dtype=torch.long)
        loss = torch.zeros((len(examples), length), dtype=torch.long)
        for row, e in enumerate(examples):
            p, n = len(e["prompt_ids"]), len(e["prompt_ids"]) + len(e["response_ids"])
            ids[row, :n] = torch.tensor(e["prompt_ids"] + e["response_ids"], dtype=torch.long)
            attn[row, :n] = 1
            loss[row, p:n] = 1
        return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss}


@dataclass
class SFTOutput:
    """One SFT step: the scalar ``loss`` (nats per response token), its ``metrics`` and the per-token ``stats``."""

    loss: Tensor
    metrics: dict[str, Tensor]
    stats: TokenStats

    @property
    def result(self) -> SFTOutput:
        # The trainer reads ``out.result.metrics`` of a preference step; an SFT step answers the same way.
        return self


class SFTModel(nn.Module):
    """The trainable part of the SFT stage: the policy (no reference, no mask networks)."""

    masks = None  # what the trainer's optimizer and checkpointing look for on a PreferenceModel

    def __init__(self, policy: nn.Module, chunk_size: int = 1024):
        super().__init__()
        self.policy = policy
        self.chunk_size = chunk_size

    def forward(self, batch: dict[str, Tensor], ref_out: Any = None) -> SFTOutput:
        stats = token_stats(self.policy, batch, None, need_kl=False, chunk_size=self.chunk_size)
        loss = get_loss("sft").fn(stats)
        nll = loss.detach()
        metrics = {
            "loss": nll,
            "sft/ppl": nll.exp(),
            "sft/response_tokens": stats.mask.sum(-1).mean(),
        }
        return SFTOutput(loss, metrics, stats)
