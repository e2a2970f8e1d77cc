"""Sequence-level objectives (METHODS.md "Sequence-level baselines", IPO from "The zoo"): DPO, SimPO, DPOP, IPO.

Each reads one weighted sum per response, so a learned mask or a zoo weighting (``reward_mask``) composes with
it; registered by name in ``sparsepo.objectives.losses.LOSSES``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsepo.objectives.registry import TokenStats, bt_nll, register_loss

if TYPE_CHECKING:  # torch is imported by the functions that compute: the registry loads without it (config checks)
    from torch import Tensor

# The sequence objectives read S_m(y) = sum_t m_t r_t (m = 1 without a mask), so a learned mask or a zoo
# weighting composes with each of them; unmasked they are exactly METHODS.md's DPO, SimPO, DPOP and IPO.


@register_loss("dpo", beta=0.1)
def dpo(c: TokenStats, r: TokenStats, *, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    rw = beta * c.weighted_log_ratio
    rl = beta * r.weighted_log_ratio
    return bt_nll(rw - rl), rw, rl


@register_loss("simpo", needs_reference=False, beta=2.0, gamma=0.5)
def simpo(c: TokenStats, r: TokenStats, *, beta: float, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    # A_m(y): the weighted mean log-prob (the length-normalised average over the weighted tokens).
    rw = beta * c.weighted_logps / c.weights.sum(-1).clamp(min=1e-6)
    rl = beta * r.weighted_logps / r.weights.sum(-1).clamp(min=1e-6)
    return bt_nll(rw - rl - gamma), rw, rl


@register_loss("dpop", beta=0.1, lam=50.0)
def dpop(c: TokenStats, r: TokenStats, *, beta: float, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    dw = c.weighted_log_ratio
    dl = r.weighted_log_ratio
    # Penalise the policy for lowering the chosen response's likelihood below the reference's.
    penalty = lam * (-dw).clamp(min=0)
    return bt_nll(beta * (dw - dl - penalty)), beta * dw, beta * dl


@register_loss("ipo", beta=0.1)
def ipo(c: TokenStats, r: TokenStats, *, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    # IPO regresses the log-ratio margin h onto 1 / (2 beta) instead of pushing it through a sigmoid.
    dw, dl = c.weighted_log_ratio, r.weighted_log_ratio
    return (dw - dl - 1.0 / (2.0 * beta)) ** 2, beta * dw, beta * dl

