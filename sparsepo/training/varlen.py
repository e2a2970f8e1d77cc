"""Per-pair attention for multi-pair rows on SDPA models: attention work ``sum(n_i^2)``, whatever the row width.

``sparsepo.training.packing`` can put every pair of a batch in one row, so the decoder's linear layers run exactly the
real tokens. A dense ``(T, T)`` mask would then make SDPA's work grow with the square of the whole batch, and
the mask itself with it. Instead, while a packed pass runs, the model's attention is switched to
``varlen_attention`` (an ``AttentionInterface`` entry): it runs SDPA on each pair's segment alone, with the
segment's own ``(n, n)`` mask, and concatenates the outputs. This is what varlen (``cu_seqlens``) kernels do on
CUDA, which cannot express a rejected response that sees its prompt but not the chosen response before it.

Used only for models whose attention is ``sdpa`` and has no sliding window (the window would live in the
mask this path drops); any other model runs the packing's dense mask instead (same values, dense cost).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

VARLEN = "sparsepo_varlen"
Segments = list[list[tuple[int, int, Tensor]]]  # per row: (offset, length, allowed (1, 1, n, n)) of each pair


def varlen_attention(
    module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
    pair_segments: Segments | None = None, **kwargs,  # noqa: ANN003
) -> tuple[Tensor, None]:
    """SDPA on each segment of each row: query ``(rows, H, T, dh)``, key/value ``(rows, H_kv, T, dh)`` ->
    ``(rows, T, H, dh)`` as HF's SDPA returns it (positions after a row's last segment: zeros, never read).
    Without ``pair_segments`` (a padded pass), plain SDPA."""
    if pair_segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows, heads, width, dim = query.shape
    out = []
    for r, segs in enumerate(pair_segments):
        parts = [
            sdpa_attention_forward(module, query[r : r + 1, :, o : o + n], key[r : r + 1, :, o : o + n],
                                   value[r : r + 1, :, o : o + n], mask, **kwargs)[0]
            for o, n, mask in segs
        ]
        used = sum(n for _, n, _ in segs)
        if used < width:
            parts.append(query.new_zeros((1, width - used, heads, dim)))
        out.append(torch.cat(parts, dim=1))
    return torch.cat(out, dim=0), None


AttentionInterface.register(VARLEN, varlen_attention)


def supports_varlen(model: nn.Module) -> bool:
    """Whether ``model`` (an HF causal LM) can run ``varlen_attention``: SDPA attention, no sliding window, and
    no activation checkpointing (its recompute in the backward would run after ``varlen`` has switched back)."""
    cfg = model.config
    return (getattr(cfg, "_attn_implementation", None) == "sdpa" and not getattr(cfg, "sliding_window", None)
            and not getattr(model, "is_gradient_checkpointing", False))


@contextmanager
def varlen(config: object) -> Iterator[None]:
    """Route the model's attention through ``varlen_attention`` for the duration of one forward pass."""
    before = config._attn_implementation
    config._attn_implementation = VARLEN
    try:
        yield
    finally:
        config._attn_implementation = before
