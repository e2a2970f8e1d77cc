"""Token weightings from the literature, registered by name: the zoo of token-level preference methods.

A weighting turns one side's per-token values into a weight per token, ``(batch, tokens)``, >= 0 and 0 off the
response; the sequence objectives (DPO, SimPO, DPOP, IPO in ``sparsepo.objectives.losses``) then weigh each token's term
by it, exactly as SparsePO's mask mu weighs its log-ratio. A zoo method is one ``register_loss`` call pairing
an objective with a weighting (``weights=...``); adding a weighting is one decorated function here.

Weights are computed without gradient, from values of the current batch only:

- ``logps``: the policy's log pi(y_t | x, y_<t) (ConfPO's confidence), nats;
- ``oracle_logps`` and ``ref_logps``: an oracle model's and the reference's log-probs, whose difference
  r^_t = log pi_o(y_t) - log ref(y_t) is the oracle's implicit token reward (nats). The oracle is a model
  trained on the chosen side of the same pairs (the pipelines train it with DPO as a cached stage:
  ``sparsepo.experiments.stages.train_oracle``); ``model.oracle`` names it.

Every formula, its source and where ours departs from it are in ``docs/METHODS.md`` ("The zoo").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the functions that compute: the registry (WEIGHTINGS) loads without it
    from torch import Tensor

    from sparsepo.objectives.losses import TokenStats

WeightFn = Callable[..., "Tensor"]  # fn(stats, chosen: bool, **params) -> weights (batch, tokens)


@dataclass(frozen=True)
class Weighting:
    """A registered token weighting: its function, whether it reads an oracle model, its parameters' defaults."""

    name: str
    fn: WeightFn
    needs_oracle: bool
    defaults: dict[str, float]


WEIGHTINGS: dict[str, Weighting] = {}


def register_weighting(name: str, *, needs_oracle: bool = False, **defaults: float) -> Callable[[WeightFn], WeightFn]:
    def deco(fn: WeightFn) -> WeightFn:
        if name in WEIGHTINGS:
            raise ValueError(f"weighting {name!r} is already registered")
        WEIGHTINGS[name] = Weighting(name, fn, needs_oracle, dict(defaults))
        return fn

    return deco


def token_weights(name: str, s: TokenStats, *, chosen: bool, **params: float) -> Tensor:
    """Weights ``(batch, tokens)`` of the registered weighting ``name`` on one side, detached, 0 off the response."""
    import torch

    spec = WEIGHTINGS[name]
    with torch.no_grad():
        w = spec.fn(s, chosen, **{**spec.defaults, **params})
    return (w * s.mask).to(s.logps.dtype)


def oracle_reward(s: TokenStats) -> Tensor:
    """r^_t = log pi_o(y_t) - log ref(y_t), nats, ``(batch, tokens)``; 0 off the response."""
    if s.oracle_logps is None or s.ref_logps is None:
        raise ValueError("this weighting needs the oracle's and the reference's per-token log-probs "
                         "(set model.oracle to a model trained on the chosen side)")
    return (s.oracle_logps - s.ref_logps) * s.mask


def _response_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over each row's response tokens -> ``(batch, 1)``."""
    return (values * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)


@register_weighting("confidence")
def confidence(s: TokenStats, chosen: bool) -> Tensor:
    """ConfPO: w_t = 1[p_t <= mean_s p_s], p_t = pi(y_t | .): the tokens the policy is least sure of."""
    p = s.logps.float().exp()
    return (p <= _response_mean(p, s.mask)).float()


@register_weighting("importance", needs_oracle=True, mu=1.0, clip=1.0)
def importance(s: TokenStats, chosen: bool, *, mu: float, clip: float) -> Tensor:
    """TIS-DPO: w_t = k exp(+-mu clamp(r^_t, -clip, clip)), + on the chosen side, - on the rejected one; k makes
    the weights average 1 over each response."""
    import torch

    sign = 1.0 if chosen else -1.0
    w = torch.exp(sign * mu * oracle_reward(s).float().clamp(-clip, clip))
    return w / _response_mean(w, s.mask).clamp(min=1e-12)


@register_weighting("critical", needs_oracle=True, tau=1.0)
def critical(s: TokenStats, chosen: bool, *, tau: float) -> Tensor:
    """cDPO: on the rejected side w_t = 2 sigma(-r^_t / tau), so tokens the oracle disfavours (critical tokens)
    weigh up to 2 and neutral ones 1; the chosen side keeps w_t = 1."""
    import torch

    if chosen:
        return torch.ones_like(s.logps, dtype=torch.float32)
    return 2.0 * torch.sigmoid(-oracle_reward(s).float() / max(tau, 1e-12))


@register_weighting("guidance", needs_oracle=True, alpha=0.5)
def guidance(s: TokenStats, chosen: bool, *, alpha: float) -> Tensor:
    """TGDPO: a per-token beta_t = beta w_t with w_t = max(0, 1 + alpha r^_t) (chosen), max(0, 1 - alpha r^_t)
    (rejected): tokens the oracle rewards weigh more in the chosen response, less in the rejected one."""
    sign = 1.0 if chosen else -1.0
    return (1.0 + sign * alpha * oracle_reward(s).float()).clamp(min=0.0)


@register_weighting("selective", needs_oracle=True, fraction=0.3)
def selective(s: TokenStats, chosen: bool, *, fraction: float) -> Tensor:
    """SePO: w_t = 1 on the ceil(fraction |y|) tokens with the highest r^_t (chosen) or the lowest (rejected),
    0 elsewhere; ties broken by position."""
    import torch

    r = oracle_reward(s).float() * (1.0 if chosen else -1.0)
    keep = s.mask > 0
    n = keep.sum(-1)
    k = torch.tensor([math.ceil(fraction * int(x)) for x in n], device=r.device).clamp(max=n)
    order = torch.where(keep, r, -torch.inf).argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(r.shape[-1], device=r.device).expand_as(order))
    return (rank < k[:, None]).float()
