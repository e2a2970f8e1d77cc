"""bench common: the saved-for-backward bytes a step's forward leaves."""

from types import SimpleNamespace

import torch
from torch import nn

from sparsepo.bench.common import saved_bytes


class Toy(nn.Module):
    """relu(x W^T + b).sum(): autograd keeps x (for W's gradient) and relu's output; W and b are parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(10, 20)

    def forward(self, batch: dict, ref_out: object) -> SimpleNamespace:
        h = self.lin(batch["x"])
        return SimpleNamespace(loss=torch.relu(h * 2 if ref_out is not None else h).sum())


def test_saved_bytes_counts_activations_not_parameters():
    x = torch.randn(5, 10)
    assert saved_bytes(Toy(), None, {"x": x}, None) == (5 * 10 + 5 * 20) * 4


def test_saved_bytes_counts_a_shared_storage_once_and_runs_the_reference_first():
    seen = []
    x = torch.randn(5, 10)
    # h * 2 by a Python scalar saves nothing; relu saves its output: the same two tensors as without a reference
    assert saved_bytes(Toy(), lambda batch: seen.append(batch) or "ref", {"x": x}, None) == (5 * 10 + 5 * 20) * 4
    assert len(seen) == 1
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    # autocast: x's bf16 copy and relu's bf16 output (W's copy is not kept: x needs no gradient)
    assert saved_bytes(Toy(), None, {"x": x}, bf16) == (5 * 10 + 5 * 20) * 2
    x.requires_grad_(True)  # now x's gradient needs W: its bf16 copy is kept too
    assert saved_bytes(Toy(), None, {"x": x}, bf16) == (5 * 10 + 20 * 10 + 5 * 20) * 2
