"""Shared-prompt, padding-free packing: each pair's prompt runs once, and several pairs share one row.

A preference batch (``sparsepo.data.preference.PreferenceCollator``) holds ``2B`` padded rows, chosen then rejected,
whose ``B`` prompts appear twice. Packed, pair ``i`` becomes one segment ``[prompt, chosen, rejected]`` of
``n_i = P + C + R`` tokens, with

- position ids ``0 .. P+C-1`` for prompt and chosen and ``P .. P+R-1`` for rejected (as if it followed the
  prompt): positions restart at 0 in every segment;
- a 4D attention mask in which chosen tokens see the prompt and earlier chosen tokens, and rejected tokens see
  the prompt and earlier rejected tokens, never the chosen response nor another segment (padding sees only itself).

Segments are bin-packed into rows of ``T`` tokens, first-fit decreasing (``row_tokens``: ``None`` puts one pair
per row; ``n`` makes the budget ``max(n, longest pair)``; ``ONE_ROW`` puts every pair in one row, unpadded).
Every token then has exactly the context it has in the padded batch, so hidden states are equal; ``unpack``
maps any ``(rows, T, ...)`` output back to the padded ``(2B, L, ...)`` layout (padding positions get a copy of a
real position; nothing reads them), so losses, masks and metrics never see the packed layout.

Which budget (``sparsepo.training.forward.pair_packing``): the linear layers cost ``rows * T`` positions; attention under
a dense ``(rows, 1, T, T)`` mask costs ``rows * T^2`` whatever the mask allows. On the ``realistic`` workload's
lengths (prompt, chosen, rejected each 64-256 tokens; pairs of 192-768), pairs rarely fit two into the longest
one, so rows of the longest pair leave 99% (4 pairs) to 97% (16 pairs) of the one-pair-per-row decoder work
(SmolLM2-135M's matmuls, 40 batches), and wider rows cost more attention than the padding they save (one row of
16 pairs: 2.2x). Run pair by pair (``sparsepo.training.varlen``: SDPA on each pair's segment, so attention costs
``sum(n_i^2)`` at any row width), one row is best: the decoder runs exactly the real tokens, 1,914 positions
for 4 pairs against 2,372 one pair per row and 3,512 padded (7,715 / 10,376 / 15,054 for 16). So SDPA models
get ``ONE_ROW`` and per-pair attention; any other attention, one pair per row with the dense mask.

CUDA: the same per-pair SDPA path runs there (untested: no GPU was lent). Not implemented: flash-attention's
varlen kernels. One causal block per ``cu_seqlens`` sequence cannot give a rejected response its prompt without
the chosen response; two varlen calls per layer could (prompt+chosen causal; rejected queries against
prompt+rejected keys, bottom-right aligned), with the keys gathered per pair.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

ONE_ROW = sys.maxsize  # ``row_tokens`` putting every pair of a batch in one row


@dataclass
class PackedPairs:
    """A batch of ``B`` pairs packed into ``rows <= B`` rows; see the module docstring.

    ``input_ids`` / ``position_ids`` ``(rows, T)`` int64; ``index`` ``(2B, L)`` int64: for each padded position,
    its flat position ``row * T + t`` in the packed batch; ``segments``: ``(row, offset, P, C, R)`` of each pair;
    ``row_tokens``: the budget it was packed with (``pack_pairs``).
    """

    input_ids: Tensor
    position_ids: Tensor
    index: Tensor
    segments: list[tuple[int, int, int, int, int]]
    row_tokens: int | None

    @cached_property
    def allowed(self) -> Tensor:
        """The dense mask ``(rows, 1, T, T)`` bool (True: may attend), block-diagonal across pairs."""
        rows, width = self.input_ids.shape
        allowed = torch.eye(width, dtype=torch.bool, device=self.input_ids.device).repeat(rows, 1, 1, 1)
        for row, o, p, c, r in self.segments:
            allowed[row, 0, o : o + p + c + r, o : o + p + c + r] = _segment(p, c, r, allowed.device)[1]
        return allowed

    @cached_property
    def row_segments(self) -> list[list[tuple[int, int, Tensor]]]:
        """Per row, ``(offset, length, allowed (1, 1, n, n))`` of each pair in offset order (``sparsepo.training.varlen``)."""
        per_row: list[list[tuple[int, int, Tensor]]] = [[] for _ in range(self.input_ids.shape[0])]
        for row, o, p, c, r in sorted(self.segments):
            per_row[row].append((o, p + c + r, _segment(p, c, r, self.input_ids.device)[1][None, None]))
        return per_row

    def attention_mask(self, attn_implementation: str | None, dtype: torch.dtype) -> Tensor:
        """The mask as the model's attention wants it: bool for SDPA/flex, additive (0 / min) for eager."""
        if attn_implementation in ("sdpa", "flex_attention"):
            return self.allowed
        zero = torch.zeros((), dtype=dtype, device=self.allowed.device)
        return torch.where(self.allowed, zero, torch.finfo(dtype).min)

    def unpack(self, x: Tensor) -> Tensor:
        """``(rows, T, ...)`` packed output -> ``(2B, L, ...)`` in the padded batch's layout. Differentiable."""
        flat = x.reshape(-1, *x.shape[2:])
        return flat[self.index.reshape(-1)].view(*self.index.shape, *x.shape[2:])


def _response_spans(loss_mask: Tensor) -> tuple[list[int], list[int]]:
    """Start (= prompt length) and length of each row's response, from its loss mask ``(rows, L)``."""
    rows = loss_mask.bool()
    lengths = rows.sum(-1)
    starts = torch.where(lengths > 0, rows.int().argmax(-1), rows.shape[1])
    return starts.tolist(), lengths.tolist()


def pair_spans(batch: dict[str, Tensor]) -> list[tuple[int, int, int]] | None:
    """``(P, C, R)`` token counts of each pair of a ``2B``-row pair batch, or None when its rows are not pairs
    sharing a prompt, each response ending its row (then the batch runs padded)."""
    ids, loss_mask = batch["input_ids"], batch["loss_mask"]
    if ids.shape[0] % 2 or ids.shape[0] == 0:
        return None
    b = ids.shape[0] // 2
    starts, lens = _response_spans(loss_mask)
    real = batch["attention_mask"].sum(-1).tolist()
    if any(s + n != r for s, n, r in zip(starts, lens, real, strict=True)):
        return None
    for i in range(b):
        p = starts[i]
        if starts[b + i] != p or not torch.equal(ids[i, :p], ids[b + i, :p]) or lens[i] == 0 or lens[b + i] == 0:
            return None
    return [(starts[i], lens[i], lens[b + i]) for i in range(b)]


def first_fit_decreasing(sizes: list[int], budget: int) -> list[tuple[int, int]]:
    """``(row, offset)`` of each item (in input order) packed into rows of ``budget``, longest first; every
    size must be ``<= budget``. Ties keep input order, so a batch always packs the same way."""
    used: list[int] = []
    place = [(0, 0)] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda k: -sizes[k]):
        row = next((r for r, u in enumerate(used) if u + sizes[i] <= budget), len(used))
        if row == len(used):
            used.append(0)
        place[i] = (row, used[row])
        used[row] += sizes[i]
    return place


def _segment(p: int, c: int, r: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One pair's segment layout: position ids ``(n,)``, allowed ``(n, n)``, and the segment column of each
    real token of the chosen ``(P+C,)`` and rejected ``(P+R,)`` padded rows; ``n = P+C+R``."""
    n = p + c + r
    pos = torch.cat((torch.arange(p + c, device=device), torch.arange(p, p + r, device=device)))
    allowed = torch.ones((n, n), dtype=torch.bool, device=device).tril()
    allowed[p + c :, p : p + c] = False  # rejected never sees the chosen response
    cols = torch.arange(n, device=device)
    return pos, allowed, cols[: p + c], torch.cat((cols[:p], cols[p + c :]))


def pack_pairs(batch: dict[str, Tensor], row_tokens: int | None = 0) -> PackedPairs | None:
    """Pack a concatenated pair batch ``(2B, L)`` into rows of at most ``max(row_tokens, longest pair)`` tokens
    (``None``: one pair per row), or None when its rows are not pairs sharing a prompt (then run it padded)."""
    spans = pair_spans(batch)
    if spans is None:
        return None
    ids, dev = batch["input_ids"], batch["input_ids"].device
    b = len(spans)
    sizes = [sum(s) for s in spans]
    place = [(i, 0) for i in range(b)] if row_tokens is None else first_fit_decreasing(sizes, max(row_tokens, *sizes))
    rows, width = 1 + max(r for r, _ in place), max(o + n for (_, o), n in zip(place, sizes, strict=True))
    packed = torch.zeros((rows, width), dtype=ids.dtype, device=dev)
    pos = torch.zeros((rows, width), dtype=torch.long, device=dev)
    index = torch.zeros((2 * b, ids.shape[1]), dtype=torch.long, device=dev)
    for i, ((p, c, r), (row, o), n) in enumerate(zip(spans, place, sizes, strict=True)):
        seg_pos, _, cols_c, cols_r = _segment(p, c, r, dev)
        packed[row, o : o + n] = torch.cat((ids[i, : p + c], ids[b + i, p : p + r]))
        pos[row, o : o + n] = seg_pos
        base = row * width + o
        index[i], index[b + i] = base, base  # padding: any real position
        index[i, : p + c] = base + cols_c
        index[b + i, : p + r] = base + cols_r
    segments = [(row, o, *span) for span, (row, o) in zip(spans, place, strict=True)]
    return PackedPairs(packed, pos, index, segments, row_tokens)
