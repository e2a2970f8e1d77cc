"""The registry of preference objectives: the per-token inputs they read (:class:`TokenStats`), what they
return (:class:`LossOutput`), and :func:`register_loss`. The objectives themselves live in
``sparsepo.objectives.sequence_losses`` and ``sparsepo.objectives.token_losses``; ``sparsepo.objectives.losses``
registers them all and is the module to import (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from sparsepo.objectives.loss_params import param_defaults, params_class
from sparsepo.objectives.token_weights import WEIGHTINGS

if TYPE_CHECKING:  # torch is imported by the functions that compute: the registry loads without it (config checks)
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



def bt_nll(logits: Tensor) -> Tensor:
    """Bradley-Terry negative log-likelihood -log sigma(logits), stable for large |logits|."""
    import torch.nn.functional as F

    return -F.logsigmoid(logits)
