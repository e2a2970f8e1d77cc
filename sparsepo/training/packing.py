"""Shared-prompt packing: each pair's prompt runs once, with its chosen and rejected responses in one row.

A preference batch (``sparsepo.data.preference.PreferenceCollator``) holds ``2B`` padded rows, chosen then rejected,
whose ``B`` prompts appear twice. Packed, pair ``i`` is one row ``[prompt, chosen, rejected]`` of ``T`` tokens
(``T`` = the longest pair, not the longest sequence), with

- position ids ``0 .. P+C-1`` for prompt and chosen and ``P .. P+R-1`` for rejected (as if it followed the prompt);
- a 4D attention mask in which chosen tokens see the prompt and earlier chosen tokens, and rejected tokens see
  the prompt and earlier rejected tokens, never the chosen response (padding sees only itself).

Every token then has exactly the context it has in the padded batch, so hidden states are equal; ``unpack``
maps any ``(B, T, ...)`` output back to the padded ``(2B, L, ...)`` layout (padding positions get a copy of a
real position; nothing reads them). The decoder processes ``sum(P + C + R)`` tokens instead of ``2B * L``
(on the review pairs: 44% fewer) for the policy and the reference alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PackedPairs:
    """A batch of ``B`` pairs packed one row per pair; see the module docstring.

    ``input_ids`` / ``position_ids`` ``(B, T)`` int64; ``allowed`` ``(B, 1, T, T)`` bool (True: may attend);
    ``index`` ``(2B, L)`` int64: for each padded position, its flat position ``b * T + t`` in the packed batch.
    """

    input_ids: Tensor
    position_ids: Tensor
    allowed: Tensor
    index: Tensor

    def attention_mask(self, attn_implementation: str | None, dtype: torch.dtype) -> Tensor:
        """The mask as the model's attention wants it: bool for SDPA/flex, additive (0 / min) for eager."""
        if attn_implementation in ("sdpa", "flex_attention"):
            return self.allowed
        zero = torch.zeros((), dtype=dtype, device=self.allowed.device)
        return torch.where(self.allowed, zero, torch.finfo(dtype).min)

    def unpack(self, x: Tensor) -> Tensor:
        """``(B, T, ...)`` packed output -> ``(2B, L, ...)`` in the padded batch's layout. Differentiable."""
        flat = x.reshape(-1, *x.shape[2:])
        return flat[self.index.reshape(-1)].view(*self.index.shape, *x.shape[2:])


def _response_spans(loss_mask: Tensor) -> tuple[list[int], list[int]]:
    """Start (= prompt length) and length of each row's response, from its loss mask ``(rows, L)``."""
    rows = loss_mask.bool()
    lengths = rows.sum(-1)
    starts = torch.where(lengths > 0, rows.int().argmax(-1), rows.shape[1])
    return starts.tolist(), lengths.tolist()


def pack_pairs(batch: dict[str, Tensor]) -> PackedPairs | None:
    """Pack a concatenated pair batch, or None when its rows are not pairs sharing a prompt (then run it padded)."""
    ids, loss_mask = batch["input_ids"], batch["loss_mask"]
    if ids.shape[0] % 2 or ids.shape[0] == 0:
        return None
    b, length = ids.shape[0] // 2, ids.shape[1]
    starts, lens = _response_spans(loss_mask)
    ends = [s + n for s, n in zip(starts, lens, strict=True)]
    if any(ends[r] != int(batch["attention_mask"][r].sum()) for r in range(2 * b)):  # response must end the row
        return None
    for i in range(b):
        p = starts[i]
        if starts[b + i] != p or not torch.equal(ids[i, :p], ids[b + i, :p]) or lens[i] == 0 or lens[b + i] == 0:
            return None
    total = max(starts[i] + lens[i] + lens[b + i] for i in range(b))
    dev = ids.device
    packed = torch.zeros((b, total), dtype=ids.dtype, device=dev)
    pos = torch.zeros((b, total), dtype=torch.long, device=dev)
    allowed = torch.eye(total, dtype=torch.bool, device=dev).repeat(b, 1, 1, 1)
    causal = torch.ones((total, total), dtype=torch.bool, device=dev).tril()
    index = torch.zeros((2 * b, length), dtype=torch.long, device=dev)
    for i in range(b):
        p, c, r = starts[i], lens[i], lens[b + i]
        packed[i, : p + c] = ids[i, : p + c]
        packed[i, p + c : p + c + r] = ids[b + i, p : p + r]
        pos[i, : p + c] = torch.arange(p + c, device=dev)
        pos[i, p + c : p + c + r] = torch.arange(p, p + r, device=dev)
        allowed[i, 0, : p + c, : p + c] = causal[: p + c, : p + c]
        allowed[i, 0, p + c : p + c + r, :p] = True
        allowed[i, 0, p + c : p + c + r, p + c : p + c + r] = causal[:r, :r]
        base = i * total
        index[i, : p + c] = base + torch.arange(p + c, device=dev)
        index[b + i, :p] = base + torch.arange(p, device=dev)
        index[b + i, p : p + r] = base + torch.arange(p + c, p + c + r, device=dev)
        index[i, p + c :] = base  # padding: any real position
        index[b + i, p + r :] = base
    return PackedPairs(packed, pos, allowed, index)
