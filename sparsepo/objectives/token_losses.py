"""Token-level objectives (METHODS.md "Token-level baselines" and "SparsePO"): TDPO v1/v2, SparsePO, MaPO.

They read the full-vocabulary token KL k_t besides the log-ratio r_t; registered by name in
``sparsepo.objectives.losses.LOSSES``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsepo.objectives.registry import TokenStats, bt_nll, register_loss

if TYPE_CHECKING:  # torch is imported by the functions that compute: the registry loads without it (config checks)
    from torch import Tensor


@register_loss("tdpo1", needs_kl=True, beta=0.1)
def tdpo1(c: TokenStats, r: TokenStats, *, beta: float) -> tuple[Tensor, Tensor, Tensor, dict]:
    rw, rl = c.log_ratio.sum(-1), r.log_ratio.sum(-1)
    losses = bt_nll(beta * ((rw - rl) - (r.seq_kl - c.seq_kl)))
    return losses, beta * (rw + c.seq_kl), beta * (rl + r.seq_kl), {"rewards_u": (beta * rw, beta * rl)}


@register_loss("tdpo2", needs_kl=True, beta=0.1, alpha=0.5)
def tdpo2(c: TokenStats, r: TokenStats, *, beta: float, alpha: float) -> tuple[Tensor, Tensor, Tensor, dict]:
    rw, rl = c.log_ratio.sum(-1), r.log_ratio.sum(-1)
    # TDPO v2 stops the gradient through the chosen side's KL.
    kl_margin = r.seq_kl - c.seq_kl.detach()
    losses = bt_nll(beta * ((rw - rl) - alpha * kl_margin))
    rewards = beta * (rw + alpha * c.seq_kl), beta * (rl + alpha * r.seq_kl)
    return losses, *rewards, {"rewards_u": (beta * rw, beta * rl)}


def masked_terms(s: TokenStats) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """U(y), D(y) and the masks used, with absent masks meaning all-ones; common mask when only mu is given.

    Returns ``(U (batch,), D (batch,), mu (batch, tokens), md (batch, tokens))``.
    """
    ones = s.logps.new_ones(s.logps.shape)
    mu = s.reward_mask if s.reward_mask is not None else ones
    md = s.kl_mask if s.kl_mask is not None else mu
    return (mu * s.log_ratio).sum(-1), s.total(md * s._need("kl")), mu, md


def _l1(s: TokenStats, m: Tensor | None) -> Tensor:
    return s.total(m.abs()) if m is not None else s.mask[:, 0].new_zeros(s.mask.shape[:1])


@register_loss("sparsepo", needs_kl=True, mask="learned", beta=0.1, l1_u=0.0, l1_d=0.0)
def sparsepo(
    c: TokenStats, r: TokenStats, *, beta: float, l1_u: float, l1_d: float
) -> tuple[Tensor, Tensor, Tensor, dict]:
    uw, dw, _, _ = masked_terms(c)
    ul, dl, _, _ = masked_terms(r)
    losses = bt_nll(beta * ((uw - ul) - (dl - dw)))
    if c.kl_mask is None:  # common mask: one network serves mu and md
        losses = losses + (l1_u + l1_d) / 2 * (_l1(c, c.reward_mask) + _l1(r, r.reward_mask))
    else:
        losses = losses + l1_u * (_l1(c, c.reward_mask) + _l1(r, r.reward_mask))
        losses = losses + l1_d * (_l1(c, c.kl_mask) + _l1(r, r.kl_mask))
    return losses, beta * (uw + dw), beta * (ul + dl), {"rewards_u": (beta * uw, beta * ul)}


@register_loss("mapo", needs_kl=True, mask="activation", beta=0.1)
def mapo(c: TokenStats, r: TokenStats, *, beta: float) -> tuple[Tensor, Tensor, Tensor, dict]:
    # MaPO is the SparsePO objective with fixed activation masks (mu = md) and no L1 term.
    return sparsepo(c, r, beta=beta, l1_u=0.0, l1_d=0.0)

