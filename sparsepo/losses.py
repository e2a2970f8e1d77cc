"""Preference objectives (SparsePO and baselines) as small pure functions, registered by name.

Every objective reads per-token tensors of one side (chosen or rejected) of a batch of pairs, all of shape
``(batch, tokens)`` and aligned with the predicted tokens (position ``t`` holds values for token ``y_t``):

- ``logps``      log pi(y_t | x, y_<t), nats
- ``ref_logps``  log ref(y_t | x, y_<t), nats (absent for reference-free methods)
- ``kl``         k_t = KL(ref(.|x,y_<t) || pi(.|x,y_<t)) over the full vocabulary, nats
- ``mask``       1.0 on response tokens, 0.0 on prompt and padding
- ``reward_mask`` / ``kl_mask``  optional SparsePO masks mu_t / md_t (>= 0)

The notation and every formula follow ``METHODS.md``. Per-pair losses are returned; the batch loss is their mean.
Adding a method is one decorated function here: ``@register_loss("name", ...)``. It returns ``(losses, rw, rl)``,
optionally followed by a dict of named reward parts ``{name: (chosen, rejected)}``, each ``(batch,)``.

Reward metrics (batch means, nats scaled by beta). ``rewards/chosen`` and ``rewards/rejected`` are each side's
whole implicit-reward term of the objective, so ``rewards/margin`` is the Bradley-Terry logit the loss uses
(before DPOP's penalty, SimPO's gamma and the L1 terms) and ``rewards/accuracy`` the share of pairs with a
positive margin:

- dpo, dpop: beta * (S(y) - S_ref(y));  simpo: beta * A(y)
- tdpo1: beta * (sum_t r_t + sum_t k_t);  tdpo2: beta * (sum_t r_t + alpha * sum_t k_t)
- sparsepo, mapo: beta * (U(y) + D(y))

Token-level methods also log ``rewards_u/{chosen,rejected,margin,accuracy}``: the log-ratio part alone,
beta * U(y) (TDPO: beta * sum_t r_t, i.e. U with mu = 1), without the KL term.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class TokenStats:
    """Per-token tensors of one side of a batch of pairs; every tensor is ``(batch, tokens)``."""

    logps: Tensor
    mask: Tensor
    ref_logps: Tensor | None = None
    kl: Tensor | None = None
    reward_mask: Tensor | None = None
    kl_mask: Tensor | None = None

    @classmethod
    def coerce(cls, x: TokenStats | Mapping[str, Tensor]) -> TokenStats:
        if isinstance(x, TokenStats):
            return x
        known = {f.name for f in fields(cls)}
        unknown = set(x) - known
        if unknown:
            raise KeyError(f"unknown token-stat keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**x)

    def total(self, values: Tensor) -> Tensor:
        """Sum of ``values`` (batch, tokens) over response tokens -> (batch,)."""
        return (values * self.mask).sum(-1)

    @property
    def n_tokens(self) -> Tensor:
        return self.mask.sum(-1).clamp(min=1)

    @property
    def seq_logps(self) -> Tensor:
        """S(y) = sum_t log pi(y_t|.) over the response -> (batch,)."""
        return self.total(self.logps)

    @property
    def seq_ref_logps(self) -> Tensor:
        return self.total(self._need("ref_logps"))

    @property
    def log_ratio(self) -> Tensor:
        """r_t = log pi - log ref, zero off the response -> (batch, tokens)."""
        return (self.logps - self._need("ref_logps")) * self.mask

    @property
    def seq_kl(self) -> Tensor:
        return self.total(self._need("kl"))

    def _need(self, name: str) -> Tensor:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"this objective needs per-token `{name}`, which was not given")
        return value


@dataclass
class LossOutput:
    """Result of one objective on a batch of pairs.

    ``losses``: per-pair loss (batch,); ``chosen_rewards`` / ``rejected_rewards``: each side's implicit-reward
    term of the objective (batch,), nats scaled by beta (see the module docstring); ``metrics``: scalar tensors named as in METHODS.md (batch means, detached).
    """

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)

    @property
    def loss(self) -> Tensor:
        return self.losses.mean()


LossFn = Callable[..., tuple[Tensor, ...]]  # (losses, rw, rl) or (losses, rw, rl, {name: (chosen, rejected)})


@dataclass(frozen=True)
class LossSpec:
    """A registered objective: its function, what the forward pass must provide, and default hyper-parameters.

    ``mask`` names where SparsePO-style masks come from: ``None`` (no mask), ``"learned"`` (mask networks
    trained with the policy) or ``"activation"`` (MaPO: fixed masks from the reference's activations).
    ``inputs`` is ``"pairs"`` (``fn(chosen, rejected, **hparams)``) or ``"sequences"`` (``fn(stats)`` on single
    prompt/response sequences: the SFT stage, trained through ``sparsepo.sft``).
    """

    name: str
    fn: LossFn
    needs_reference: bool
    needs_kl: bool
    mask: str | None
    defaults: dict[str, float]
    inputs: str = "pairs"


LOSSES: dict[str, LossSpec] = {}


def register_loss(
    name: str,
    *,
    needs_reference: bool = True,
    needs_kl: bool = False,
    mask: str | None = None,
    inputs: str = "pairs",
    **defaults: float,
) -> Callable[[LossFn], LossFn]:
    if inputs not in ("pairs", "sequences"):
        raise ValueError(f"loss {name!r}: inputs must be 'pairs' or 'sequences', got {inputs!r}")

    def deco(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = LossSpec(name, fn, needs_reference, needs_kl, mask, dict(defaults), inputs)
        return fn

    return deco


def get_loss(name: str) -> LossSpec:
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {sorted(LOSSES)}") from None


def _bt(logits: Tensor) -> Tensor:
    """Bradley-Terry negative log-likelihood -log sigma(logits), stable for large |logits|."""
    return -F.logsigmoid(logits)


@register_loss("dpo", beta=0.1)
def dpo(c: TokenStats, r: TokenStats, *, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    rw = beta * (c.seq_logps - c.seq_ref_logps)
    rl = beta * (r.seq_logps - r.seq_ref_logps)
    return _bt(rw - rl), rw, rl


@register_loss("simpo", needs_reference=False, beta=2.0, gamma=0.5)
def simpo(c: TokenStats, r: TokenStats, *, beta: float, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    rw = beta * c.seq_logps / c.n_tokens
    rl = beta * r.seq_logps / r.n_tokens
    return _bt(rw - rl - gamma), rw, rl


@register_loss("dpop", beta=0.1, lam=50.0)
def dpop(c: TokenStats, r: TokenStats, *, beta: float, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    dw = c.seq_logps - c.seq_ref_logps
    dl = r.seq_logps - r.seq_ref_logps
    # Penalise the policy for lowering the chosen response's likelihood below the reference's.
    penalty = lam * torch.clamp(-dw, min=0)
    return _bt(beta * (dw - dl - penalty)), beta * dw, beta * dl


@register_loss("tdpo1", needs_kl=True, beta=0.1)
def tdpo1(c: TokenStats, r: TokenStats, *, beta: float) -> tuple[Tensor, Tensor, Tensor, dict]:
    rw, rl = c.log_ratio.sum(-1), r.log_ratio.sum(-1)
    losses = _bt(beta * ((rw - rl) - (r.seq_kl - c.seq_kl)))
    return losses, beta * (rw + c.seq_kl), beta * (rl + r.seq_kl), {"rewards_u": (beta * rw, beta * rl)}


@register_loss("tdpo2", needs_kl=True, beta=0.1, alpha=0.5)
def tdpo2(c: TokenStats, r: TokenStats, *, beta: float, alpha: float) -> tuple[Tensor, Tensor, Tensor, dict]:
    rw, rl = c.log_ratio.sum(-1), r.log_ratio.sum(-1)
    # TDPO v2 stops the gradient through the chosen side's KL.
    kl_margin = r.seq_kl - c.seq_kl.detach()
    losses = _bt(beta * ((rw - rl) - alpha * kl_margin))
    rewards = beta * (rw + alpha * c.seq_kl), beta * (rl + alpha * r.seq_kl)
    return losses, *rewards, {"rewards_u": (beta * rw, beta * rl)}


def masked_terms(s: TokenStats) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """U(y), D(y) and the masks used, with absent masks meaning all-ones; common mask when only mu is given.

    Returns ``(U (batch,), D (batch,), mu (batch, tokens), md (batch, tokens))``.
    """
    ones = torch.ones_like(s.logps)
    mu = s.reward_mask if s.reward_mask is not None else ones
    md = s.kl_mask if s.kl_mask is not None else mu
    return (mu * s.log_ratio).sum(-1), s.total(md * s._need("kl")), mu, md


def _l1(s: TokenStats, m: Tensor | None) -> Tensor:
    return s.total(m.abs()) if m is not None else torch.zeros_like(s.mask[:, 0])


@register_loss("sparsepo", needs_kl=True, mask="learned", beta=0.1, l1_u=0.0, l1_d=0.0)
def sparsepo(
    c: TokenStats, r: TokenStats, *, beta: float, l1_u: float, l1_d: float
) -> tuple[Tensor, Tensor, Tensor, dict]:
    uw, dw, _, _ = masked_terms(c)
    ul, dl, _, _ = masked_terms(r)
    losses = _bt(beta * ((uw - ul) - (dl - dw)))
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


def reward_metrics(prefix: str, chosen: Tensor, rejected: Tensor) -> dict[str, Tensor]:
    """Batch means of per-pair rewards (batch,) of each side, their margin, and the share with margin > 0."""
    margin = (chosen - rejected).detach()
    return {
        f"{prefix}/chosen": chosen.detach().mean(),
        f"{prefix}/rejected": rejected.detach().mean(),
        f"{prefix}/margin": margin.mean(),
        f"{prefix}/accuracy": (margin > 0).float().mean(),
    }


@register_loss("sft", needs_reference=False, inputs="sequences")
def sft(s: TokenStats) -> Tensor:
    """Supervised fine-tuning: negative log-likelihood of the response tokens (prompt and padding masked),
    nats per response token of the whole batch -> scalar. Every token weighs the same, as in TRL's SFTTrainer,
    so long responses are not down-weighted."""
    return -s.total(s.logps).sum() / s.mask.sum().clamp(min=1)


def mask_metrics(prefix: str, mask: Tensor, m: Tensor) -> dict[str, Tensor]:
    """Sparsity (% of response tokens whose mask is exactly 0), mean and L1 norm of one mask, batch means."""
    n = mask.sum(-1).clamp(min=1)
    zeros = ((m == 0) & (mask > 0)).sum(-1)
    return {
        f"{prefix}/sparsity": (100.0 * zeros / n).mean(),
        f"{prefix}/mean": ((m * mask).sum(-1) / n).mean(),
        f"{prefix}/l1": (m.abs() * mask).sum(-1).mean(),
    }


def preference_loss(
    method: str, chosen: TokenStats | Mapping[str, Tensor], rejected: TokenStats | Mapping[str, Tensor], **hparams: Any
) -> LossOutput:
    """Compute a registered objective on a batch of pairs.

    Args:
        method: a name in ``LOSSES`` (dpo, simpo, dpop, tdpo1, tdpo2, sparsepo, mapo).
        chosen, rejected: per-token tensors (see module docstring), each ``(batch, tokens)``.
        hparams: the method's hyper-parameters (``beta``, ``gamma``, ``lam``, ``alpha``, ``l1_u``, ``l1_d``);
            missing ones take the defaults of METHODS.md; ones the method does not use are an error.

    Returns:
        :class:`LossOutput` with per-pair ``losses`` (batch,) and the METHODS.md metrics.
    """
    spec = get_loss(method)
    if spec.inputs != "pairs":
        raise ValueError(f"method {method!r} trains on single sequences (sparsepo.sft), not on preference pairs")
    unknown = set(hparams) - set(spec.defaults)
    if unknown:
        raise TypeError(f"method {method!r} takes {sorted(spec.defaults)}, not {sorted(unknown)}")
    c, r = TokenStats.coerce(chosen), TokenStats.coerce(rejected)
    losses, rw, rl, *parts = spec.fn(c, r, **{**spec.defaults, **hparams})

    metrics: dict[str, Tensor] = {"loss": losses.detach().mean()}
    for name, (chosen_part, rejected_part) in {"rewards": (rw, rl), **(parts[0] if parts else {})}.items():
        metrics.update(reward_metrics(name, chosen_part, rejected_part))
    metrics["logps/chosen"] = c.seq_logps.detach().mean()
    metrics["logps/rejected"] = r.seq_logps.detach().mean()
    for side, s in (("chosen", c), ("rejected", r)):
        if s.kl is not None:
            metrics[f"kl/{side}"] = s.seq_kl.detach().mean()
        if spec.mask is not None or s.reward_mask is not None:
            _, d, mu, md = masked_terms(s)
            metrics[f"masked_kl/{side}"] = d.detach().mean()
            metrics.update(mask_metrics(f"mask/reward/{side}", s.mask, mu.detach()))
            metrics.update(mask_metrics(f"mask/kl/{side}", s.mask, md.detach()))
    return LossOutput(losses, rw, rl, metrics)
