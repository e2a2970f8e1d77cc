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
Adding a method is one decorated function here: ``@register_loss("name", ...)``. It returns ``(losses, rw, rl)``,
optionally followed by a dict of named reward parts ``{name: (chosen, rejected)}``, each ``(batch,)``. A zoo
method pairs an objective with a registered token weighting: one ``register_loss(..., weights="name")`` line at
the end of this file. torch is imported inside the functions that compute, so the registry (names, inputs,
hyper-parameters) loads without it: a config is checked, and ``sparsepo train --help`` lists the methods, in a
fraction of a second (tests/sparsepo/test_cli_startup.py).

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
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from sparsepo.objectives.loss_params import merge_params, param_defaults, params_class
from sparsepo.objectives.token_weights import WEIGHTINGS, token_weights

if TYPE_CHECKING:  # torch is imported by the functions that compute: the registry (LOSSES) loads without it
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
    oracle_logps: Tensor | None = None

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
    def weights(self) -> Tensor:
        """Per-token weights of the sequence objectives: ``reward_mask`` where given, else the response mask."""
        return self.reward_mask * self.mask if self.reward_mask is not None else self.mask

    @property
    def weighted_logps(self) -> Tensor:
        """S_m(y) = sum_t m_t log pi(y_t|.) -> (batch,); S(y) without a mask."""
        return (self.weights * self.logps).sum(-1)

    @property
    def weighted_log_ratio(self) -> Tensor:
        """sum_t m_t (log pi - log ref)(y_t) -> (batch,); S(y) - S_ref(y) without a mask."""
        return (self.weights * self.log_ratio).sum(-1)

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
    term of the objective (batch,), nats scaled by beta (see the module docstring); ``metrics``: scalar tensors named as in METHODS.md (batch means, detached);
    ``chosen`` / ``rejected``: the per-token values the objective read (a zoo weighting's weights as ``reward_mask``).
    """

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    chosen: TokenStats | None = None
    rejected: TokenStats | None = None

    @property
    def loss(self) -> Tensor:
        return self.losses.mean()


LossFn = Callable[..., tuple["Tensor", ...]]  # (losses, rw, rl) or (losses, rw, rl, {name: (chosen, rejected)})


@dataclass(frozen=True)
class LossSpec:
    """A registered objective: its function, what the forward pass must provide, and its hyper-parameters.

    ``mask`` names where SparsePO-style masks come from: ``None`` (no mask), ``"learned"`` (mask networks
    trained with the policy) or ``"activation"`` (MaPO: fixed masks from the reference's activations).
    ``inputs`` is ``"pairs"`` (``fn(chosen, rejected, **hparams)``) or ``"sequences"`` (``fn(stats)`` on single
    prompt/response sequences: the SFT stage, trained through ``sparsepo.training.sft``). ``params`` is the frozen
    dataclass of its hyper-parameters (``sparsepo.objectives.loss_params``); :func:`loss_params` merges values into it.
    """

    name: str
    fn: LossFn
    needs_reference: bool
    needs_kl: bool
    mask: str | None
    params: type
    inputs: str = "pairs"
    weights: str | None = None  # a registered token weighting (sparsepo.objectives.token_weights) applied before ``fn``

    @property
    def defaults(self) -> dict[str, float]:
        """Hyper-parameter name -> default, as given to ``register_loss``."""
        return param_defaults(self.params)

    @property
    def needs_oracle(self) -> bool:
        return self.weights is not None and WEIGHTINGS[self.weights].needs_oracle


LOSSES: dict[str, LossSpec] = {}


def register_loss(
    name: str,
    *,
    needs_reference: bool = True,
    needs_kl: bool = False,
    mask: str | None = None,
    inputs: str = "pairs",
    weights: str | None = None,
    **defaults: float,
) -> Callable[[LossFn], LossFn]:
    """Register ``fn`` as method ``name``; ``weights``: a token weighting whose parameters join ``defaults``."""
    if inputs not in ("pairs", "sequences"):
        raise ValueError(f"loss {name!r}: inputs must be 'pairs' or 'sequences', got {inputs!r}")
    if weights is not None and weights not in WEIGHTINGS:
        raise ValueError(f"loss {name!r}: unknown weighting {weights!r}; registered: {sorted(WEIGHTINGS)}")
    if weights is not None and WEIGHTINGS[weights].needs_oracle and not needs_reference:
        raise ValueError(f"loss {name!r}: weighting {weights!r} reads the reference (the oracle's reward)")
    params = {**(WEIGHTINGS[weights].defaults if weights else {}), **defaults}

    def deco(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = LossSpec(name, fn, needs_reference, needs_kl, mask, params_class(name, params), inputs, weights)
        return fn

    return deco


def get_loss(name: str) -> LossSpec:
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {sorted(LOSSES)}") from None


def loss_params(method: str, values: Mapping[str, Any] | None = None, where: str = "loss") -> dict[str, float]:
    """``method``'s hyper-parameters: its registered defaults updated by ``values`` (a config's ``loss:``), each
    checked; a ConfigError names ``<where>.<key>`` and the method. The one merge of defaults and values."""
    return merge_params(method, get_loss(method).params, values, where)


def simpo_scale(method: str) -> bool:
    """Whether ``method``'s beta is on SimPO's scale (a length-normalised log-prob, no reference): grids give
    these methods their own betas."""
    return get_loss(method).fn is simpo


def _bt(logits: Tensor) -> Tensor:
    """Bradley-Terry negative log-likelihood -log sigma(logits), stable for large |logits|."""
    import torch.nn.functional as F

    return -F.logsigmoid(logits)


# The sequence objectives read S_m(y) = sum_t m_t r_t (m = 1 without a mask), so a learned mask or a zoo
# weighting composes with each of them; unmasked they are exactly METHODS.md's DPO, SimPO, DPOP and IPO.


@register_loss("dpo", beta=0.1)
def dpo(c: TokenStats, r: TokenStats, *, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    rw = beta * c.weighted_log_ratio
    rl = beta * r.weighted_log_ratio
    return _bt(rw - rl), rw, rl


@register_loss("simpo", needs_reference=False, beta=2.0, gamma=0.5)
def simpo(c: TokenStats, r: TokenStats, *, beta: float, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    # A_m(y): the weighted mean log-prob (the length-normalised average over the weighted tokens).
    rw = beta * c.weighted_logps / c.weights.sum(-1).clamp(min=1e-6)
    rl = beta * r.weighted_logps / r.weights.sum(-1).clamp(min=1e-6)
    return _bt(rw - rl - gamma), rw, rl


@register_loss("dpop", beta=0.1, lam=50.0)
def dpop(c: TokenStats, r: TokenStats, *, beta: float, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    dw = c.weighted_log_ratio
    dl = r.weighted_log_ratio
    # Penalise the policy for lowering the chosen response's likelihood below the reference's.
    penalty = lam * (-dw).clamp(min=0)
    return _bt(beta * (dw - dl - penalty)), beta * dw, beta * dl


@register_loss("ipo", beta=0.1)
def ipo(c: TokenStats, r: TokenStats, *, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    # IPO regresses the log-ratio margin h onto 1 / (2 beta) instead of pushing it through a sigmoid.
    dw, dl = c.weighted_log_ratio, r.weighted_log_ratio
    return (dw - dl - 1.0 / (2.0 * beta)) ** 2, beta * dw, beta * dl


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
    import torch

    ones = torch.ones_like(s.logps)
    mu = s.reward_mask if s.reward_mask is not None else ones
    md = s.kl_mask if s.kl_mask is not None else mu
    return (mu * s.log_ratio).sum(-1), s.total(md * s._need("kl")), mu, md


def _l1(s: TokenStats, m: Tensor | None) -> Tensor:
    import torch

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
