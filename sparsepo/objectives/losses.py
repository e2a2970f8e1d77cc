"""Preference objectives (SparsePO and baselines) as small pure functions, registered by name.

Every objective reads per-token tensors of one side (chosen or rejected) of a batch of pairs, all of shape
``(batch, tokens)`` and aligned with the predicted tokens (position ``t`` holds values for token ``y_t``):

- ``logps``      log pi(y_t | x, y_<t), nats
- ``ref_logps``  log ref(y_t | x, y_<t), nats (absent for reference-free methods)
- ``kl``         k_t = KL(ref(.|x,y_<t) || pi(.|x,y_<t)) over the full vocabulary, nats
- ``mask``       1.0 on response tokens, 0.0 on prompt and padding
- ``reward_mask`` / ``kl_mask``  optional SparsePO masks mu_t / md_t (>= 0); the sequence objectives (dpo,
  simpo, dpop, ipo) weigh each token's term by ``reward_mask`` when it is given (masks and zoo weightings)
- ``oracle_logps`` log pi_o(y_t | x, y_<t) of an oracle model, nats (zoo weightings: ``sparsepo.objectives.token_weights``)

The notation and every formula follow ``METHODS.md``. Per-pair losses are returned; the batch loss is their mean.
The objectives live by concept in ``sparsepo.objectives.sequence_losses`` (DPO, SimPO, DPOP, IPO) and
``sparsepo.objectives.token_losses`` (TDPO, SparsePO, MaPO), the registry in ``sparsepo.objectives.registry``;
this module registers them all and is the one to import (``LOSSES``, ``get_loss``, ``preference_loss``...).
Adding a method is one decorated function in one of those modules: ``@register_loss("name", ...)``. It returns ``(losses, rw, rl)``,
optionally followed by a dict of named reward parts ``{name: (chosen, rejected)}``, each ``(batch,)``. A zoo
method pairs an objective with a registered token weighting: one ``register_loss(..., weights="name")`` line at
the end of this file.

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

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sparsepo.objectives.loss_params import merge_params
from sparsepo.objectives.registry import (
    LOSSES,
    LossFn,
    LossOutput,
    LossSpec,
    TokenStats,
    get_loss,
    register_loss,
)
from sparsepo.objectives.sequence_losses import dpo, dpop, ipo, simpo
from sparsepo.objectives.token_losses import masked_terms
from sparsepo.objectives.token_weights import WEIGHTINGS, token_weights

if TYPE_CHECKING:  # torch is imported by the functions that compute: the registry loads without it (config checks)
    from torch import Tensor

__all__ = ["LOSSES", "LossFn", "LossOutput", "LossSpec", "TokenStats", "get_loss", "loss_params", "preference_loss",
           "register_loss", "simpo_scale"]


def loss_params(method: str, values: Mapping[str, Any] | None = None, where: str = "loss") -> dict[str, float]:
    """``method``'s hyper-parameters: its registered defaults updated by ``values`` (a config's ``loss:``), each
    checked; a ConfigError names ``<where>.<key>`` and the method. The one merge of defaults and values."""
    return merge_params(method, get_loss(method).params, values, where)


def simpo_scale(method: str) -> bool:
    """Whether ``method``'s beta is on SimPO's scale (a length-normalised log-prob, no reference): grids give
    these methods their own betas."""
    return get_loss(method).fn is simpo


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
            missing ones take the defaults of METHODS.md; ones the method does not use are an error
            (:func:`loss_params`).

    Returns:
        :class:`LossOutput` with per-pair ``losses`` (batch,) and the METHODS.md metrics.
    """
    spec = get_loss(method)
    if spec.inputs != "pairs":
        raise ValueError(f"method {method!r} trains on single sequences (sparsepo.training.sft), not on preference pairs")
    values = loss_params(method, hparams)
    c, r = TokenStats.coerce(chosen), TokenStats.coerce(rejected)
    if spec.weights is not None:
        c, r = apply_weighting(spec.weights, c, r, values)
        values = {k: v for k, v in values.items() if k not in WEIGHTINGS[spec.weights].defaults}
    losses, rw, rl, *parts = spec.fn(c, r, **values)

    metrics: dict[str, Tensor] = {"loss": losses.detach().mean()}
    for name, (chosen_part, rejected_part) in {"rewards": (rw, rl), **(parts[0] if parts else {})}.items():
        metrics.update(reward_metrics(name, chosen_part, rejected_part))
    metrics["logps/chosen"] = c.seq_logps.detach().mean()
    metrics["logps/rejected"] = r.seq_logps.detach().mean()
    for side, s in (("chosen", c), ("rejected", r)):
        if s.kl is not None:
            metrics[f"kl/{side}"] = s.seq_kl.detach().mean()
        if s.reward_mask is None:
            continue
        metrics.update(mask_metrics(f"mask/reward/{side}", s.mask, s.reward_mask.detach()))
        if s.kl is not None:  # the mask md weighs the token KL (the same mask when only mu is given)
            _, d, _, md = masked_terms(s)
            metrics[f"masked_kl/{side}"] = d.detach().mean()
            metrics.update(mask_metrics(f"mask/kl/{side}", s.mask, md.detach()))
    return LossOutput(losses, rw, rl, metrics, c, r)


def apply_weighting(name: str, c: TokenStats, r: TokenStats, values: Mapping[str, float]) -> tuple[TokenStats, TokenStats]:
    """Both sides with ``reward_mask`` set to the weighting ``name``'s token weights (its parameters from ``values``)."""
    params = {k: values[k] for k in WEIGHTINGS[name].defaults}
    return tuple(  # type: ignore[return-value]
        replace(s, reward_mask=token_weights(name, s, chosen=side == "chosen", **params), kl_mask=None)
        for side, s in (("chosen", c), ("rejected", r))
    )


# ------------------------------------------------------------------------------------------------- the zoo
# Each line is one method: an objective above with a token weighting (sparsepo.objectives.token_weights) or a mask source.
# docs/METHODS.md "The zoo" states each formula and its source.
register_loss("confpo", needs_reference=False, weights="confidence", beta=2.0, gamma=0.5)(simpo)
register_loss("tisdpo", weights="importance", beta=0.1)(dpo)
register_loss("cdpo", weights="critical", beta=0.1)(dpo)
register_loss("tgdpo", weights="guidance", beta=0.1)(dpo)
register_loss("sepo", weights="selective", beta=2.0, gamma=0.0)(simpo)
register_loss("sparsepo_simpo", needs_reference=True, mask="learned", beta=2.0, gamma=0.5)(simpo)
register_loss("sparsepo_dpop", mask="learned", beta=0.1, lam=50.0)(dpop)
register_loss("sparsepo_ipo", mask="learned", beta=0.1)(ipo)
