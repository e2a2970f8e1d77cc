"""One side (chosen or rejected) of a random preference batch, as the objectives take it: shared by the tests
that check each objective and token weighting against a token-by-token re-derivation."""

import torch


def random_side(seed: int, shape: tuple[int, int], *, kl: bool = False, oracle: bool = False,
                reward_mask: bool = False, kl_mask: bool = False) -> dict[str, torch.Tensor]:
    """Float64 per-token ``logps`` and ``ref_logps`` of a (B, T) batch, ``mask`` (row 0 starts with two prompt
    positions, row 1 ends with two padding ones), and on request the token ``kl``, the ``oracle_logps`` of the
    zoo's weightings and the SparsePO masks (``reward_mask``, ``kl_mask``). Everything but ``mask`` and the
    oracle's log-probs requires grad."""
    B, T = shape
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T)
    mask[0, :2] = 0  # prompt positions
    mask[1, T - 2:] = 0  # padding
    side = {"logps": -torch.rand(B, T, generator=g) * 3, "ref_logps": -torch.rand(B, T, generator=g) * 3}
    if kl:
        side["kl"] = torch.rand(B, T, generator=g) * 0.5
    if oracle:
        side["oracle_logps"] = -torch.rand(B, T, generator=g) * 3
    side["mask"] = mask
    if reward_mask:
        side["reward_mask"] = torch.relu(torch.randn(B, T, generator=g))
    if kl_mask:
        side["kl_mask"] = torch.relu(torch.randn(B, T, generator=g))
    return {k: v.double().requires_grad_(k not in ("mask", "oracle_logps")) for k, v in side.items()}
