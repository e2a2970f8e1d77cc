"""The LM head of the token-level forward: fp32 logits of response positions, a chunk at a time.

:func:`chunked_token_stats` turns hidden states ``(N, d)`` of N response positions into per-token label log-probs
(nats) of the policy (and the reference) and the full-vocabulary token KL, ``chunk_size`` positions at a time, so no
``(N, vocab)`` log-softmax is ever written whole; with ``fused`` each chunk runs the compiled kernel of
:mod:`sparsepo.training.fused_head`. :class:`LMHead` is a model's output projection with the logit scale or
soft-cap its forward applies (:func:`logit_transform`: Gemma-2, Cohere, Granite...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from sparsepo.training.fused_head import fused_token_stats, head_transform

KL_DIRECTIONS = ("ref||pi", "pi||ref")  # which token KL: KL(ref || pi) (the methods' k_t) or KL(pi || ref)

# What a model's forward does to its LM head's output (transformers' modeling_*.py), by config key. Scales
# come first, then the soft-cap ``cap * tanh(logits / cap)`` (Gemma-2/3, MuseGlimmer's multiplier-then-cap).
_LOGIT_MULTIPLIERS = ("logit_scale", "lm_head_multiplier", "output_multiplier")  # Cohere, Falcon-H1, MuseGlimmer
_LOGIT_DIVISORS = ("logits_scaling",)  # Granite (HyperCLOVA X multiplies by it instead)
_LOGIT_SOFTCAPS = ("final_logit_softcapping", "logits_soft_cap", "output_logit_soft_cap")
_LOGIT_EXCEPTIONS = {("hyperclovax", "logits_scaling"): "mul", ("mpt", "logit_scale"): "ignored"}
# A config key that looks like a logit transform but is none of the above: refuse rather than guess.
_LOOKS_LIKE_LOGIT_TRANSFORM = re.compile(r"^(final_|output_)?logits?_\w*(cap|scal|mult)")


def logit_transform(config: Any) -> tuple[float, float | None]:
    """``(scale, softcap)`` such that the model's logits are ``softcap * tanh(scale * z / softcap)`` (or
    ``scale * z`` when softcap is None) for the head's linear output ``z``; ``(1.0, None)`` for most models.

    Raises ValueError for a config key that looks like a logit transform this function does not know.
    """
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    model_type, values = getattr(c, "model_type", ""), c.to_dict()
    scale, softcap = 1.0, None
    for key, value in values.items():
        if value is None or key == "logit_scale_init_value":  # CLIP-style contrastive init, not an LM head
            continue
        how = _LOGIT_EXCEPTIONS.get((model_type, key))
        how = how or ("mul" if key in _LOGIT_MULTIPLIERS else "div" if key in _LOGIT_DIVISORS else None)
        how = how or ("cap" if key in _LOGIT_SOFTCAPS else None)
        if how is None and _LOOKS_LIKE_LOGIT_TRANSFORM.match(key):
            raise ValueError(
                f"{model_type or type(c).__name__} config has {key}={value!r}, a transform of its logits that "
                "sparsepo.training.lm_head.logit_transform does not know: its log-probs would be wrong. Add it there."
            )
        if how == "mul":
            scale *= float(value)
        elif how == "div":
            scale /= float(value)
        elif how == "cap":
            softcap = float(value)
    return scale, softcap


class LMHead(nn.Module):
    """A model's output projection plus the scale / soft-cap its forward applies to the logits after it.

    ``weight`` and ``bias`` are the projection's; :meth:`transform` maps the projection's output ``(..., V)``
    to the model's logits (same shape and dtype).
    """

    def __init__(self, proj: nn.Module, scale: float = 1.0, softcap: float | None = None):
        super().__init__()
        self.proj, self.scale, self.softcap = proj, scale, softcap

    @property
    def weight(self) -> Tensor:
        return self.proj.weight

    @property
    def bias(self) -> Tensor | None:
        return getattr(self.proj, "bias", None)

    def transform(self, z: Tensor) -> Tensor:
        z = z * self.scale if self.scale != 1.0 else z
        return self.softcap * torch.tanh(z / self.softcap) if self.softcap else z


def _fp32_head(head: nn.Module, h: Tensor) -> tuple[Tensor, Tensor | None]:
    """The head's weight and bias in fp32 (fp64 for an fp64 model), cast once per call, not once per chunk."""
    dtype = torch.promote_types(h.dtype, torch.float32)
    bias = head.bias.to(dtype) if getattr(head, "bias", None) is not None else None
    return head.weight.to(dtype), bias


def _fp32_logits(h: Tensor, w: Tensor, b: Tensor | None, head: nn.Module) -> Tensor:
    # fp32 logits even under bf16 autocast: token KL over a 50k vocabulary is a difference of near-equal terms.
    with torch.autocast(device_type=h.device.type, enabled=False):
        z = F.linear(h.to(w.dtype), w, b)
        return head.transform(z) if isinstance(head, LMHead) else z


def _label_logps(z: Tensor, y: Tensor) -> Tensor:
    """log softmax(z)[y] as z_y - logsumexp(z): no (positions, vocab) log-softmax is written."""
    return z.gather(-1, y[:, None]).squeeze(-1) - z.logsumexp(-1)


@dataclass(frozen=True)
class _Heads:
    """Both LM heads as one chunk needs them: fp32 weight and bias (cast once per call), module (its transform);
    the reference's are None for reference-free objectives."""

    w: Tensor
    b: Tensor | None
    head: nn.Module
    wr: Tensor | None = None
    br: Tensor | None = None
    ref_head: nn.Module | None = None

    def ref_logits(self, hr: Tensor) -> Tensor:
        with torch.no_grad():
            return _fp32_logits(hr, self.wr, self.br, self.ref_head)


def _head_weights(h_policy: Tensor, policy_head: nn.Module, h_ref: Tensor | None, ref_head: nn.Module | None) -> _Heads:
    w, b = _fp32_head(policy_head, h_policy)
    if h_ref is None:
        return _Heads(w, b, policy_head)
    with torch.no_grad():
        wr, br = _fp32_head(ref_head, h_ref)
    return _Heads(w, b, policy_head, wr, br, ref_head)


def _stat_names(with_ref: bool, kl_direction: str | None) -> list[str]:
    """The keys ``chunked_token_stats`` returns, in the order each chunk yields its values."""
    return ["logps"] + (["ref_logps"] + (["kl"] if kl_direction else []) if with_ref else [])


def _chunk_stats(heads: _Heads, hp: Tensor, hr: Tensor | None, y: Tensor, kl: str | None) -> tuple[Tensor, ...]:
    """One chunk by autograd: ``(logps[, ref_logps[, kl]])``, each ``(C,)`` fp32."""
    z = _fp32_logits(hp, heads.w, heads.b, heads.head)
    if kl is None:
        out = (_label_logps(z, y),)
        return out + (_ref_label_logps(heads, hr, y),) if hr is not None else out
    lp = z.log_softmax(-1)
    with torch.no_grad():
        lr = heads.ref_logits(hr).log_softmax(-1)
    token_kl = (lr.exp() * (lr - lp)).sum(-1) if kl == "ref||pi" else (lp.exp() * (lp - lr)).sum(-1)
    return lp.gather(-1, y[:, None]).squeeze(-1), lr.gather(-1, y[:, None]).squeeze(-1), token_kl


def _ref_label_logps(heads: _Heads, hr: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return _label_logps(heads.ref_logits(hr), y)


def _autograd_chunks(
    heads: _Heads, h_policy: Tensor, h_ref: Tensor | None, labels: Tensor, kl: str | None, chunk_size: int,
    recompute: bool,
) -> list[tuple[Tensor, ...]]:
    """:func:`_chunk_stats` of each ``chunk_size`` positions; with ``recompute`` each chunk runs again in backward
    (activation checkpointing) instead of keeping every chunk's ``(chunk, vocab)`` buffers alive."""
    pieces: list[tuple[Tensor, ...]] = []
    for start in range(0, labels.shape[0], chunk_size):
        sl = slice(start, start + chunk_size)
        hp, hr, y = h_policy[sl], h_ref[sl] if h_ref is not None else None, labels[sl]
        if not recompute:
            pieces.append(_chunk_stats(heads, hp, hr, y, kl))
        elif kl is None and hr is not None:  # the no-grad reference part needs no recompute
            (lp,) = checkpoint(_chunk_stats, heads, hp, None, y, None, use_reentrant=False)
            pieces.append((lp, _ref_label_logps(heads, hr, y)))
        else:
            pieces.append(checkpoint(_chunk_stats, heads, hp, hr, y, kl, use_reentrant=False))
    return pieces


def _needs_grad(h: Tensor, head: nn.Module) -> bool:
    return torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in head.parameters()))


def chunked_token_stats(
    h_policy: Tensor,
    labels: Tensor,
    policy_head: nn.Module,
    h_ref: Tensor | None = None,
    ref_head: nn.Module | None = None,
    kl_direction: str | None = "ref||pi",
    chunk_size: int = 1024,
    fused: bool = False,
    compile_fused: bool = True,
) -> dict[str, Tensor]:
    """Log-probs of ``labels`` under both models and their token KL, ``chunk_size`` positions at a time.

    Args:
        h_policy: final hidden states of the policy at the selected positions, ``(N, d)``.
        labels: the token each position predicts, ``(N,)`` int64.
        h_ref / ref_head: the same for the reference (omit both for reference-free objectives).
        kl_direction: ``"ref||pi"`` (training, METHODS.md k_t), ``"pi||ref"`` (evaluation on policy samples) or None.
        fused: compute each chunk with :mod:`sparsepo.training.fused_head` (same values and gradients, hand-written
            backward; ``torch.compile``-d unless ``compile_fused`` is False) instead of autograd.

    Returns:
        ``logps`` (N,), and with a reference ``ref_logps`` (N,) and ``kl`` (N,) in nats, all fp32.

    Cost: one policy and one reference head matmul per position (plus the policy head's backward). Only when
    the positions span several chunks is each chunk recomputed in backward (activation checkpointing), so
    that memory stays bounded by ``chunk_size * vocab``; a single chunk keeps its buffers until backward.
    """
    if kl_direction is not None and kl_direction not in KL_DIRECTIONS:
        raise ValueError(f"kl_direction must be one of {KL_DIRECTIONS} or None, got {kl_direction!r}")
    with_ref = h_ref is not None
    kl = kl_direction if with_ref else None
    heads = _head_weights(h_policy, policy_head, h_ref, ref_head)
    recompute = _needs_grad(h_policy, policy_head) and labels.shape[0] > chunk_size
    if fused:
        ref = (h_ref.to(heads.wr.dtype), heads.wr, heads.br, head_transform(ref_head)) if with_ref else None
        pieces = fused_token_stats(h_policy.to(heads.w.dtype), labels, heads.w, heads.b, head_transform(policy_head),
                                   ref, kl, chunk_size, recompute=recompute, compiled=compile_fused)
    else:
        pieces = _autograd_chunks(heads, h_policy, h_ref, labels, kl, chunk_size, recompute)
    return _concat(pieces, _stat_names(with_ref, kl_direction), h_policy)


def _concat(pieces: list[tuple[Tensor, ...]], names: list[str], like: Tensor) -> dict[str, Tensor]:
    """Per-chunk ``(values per name)`` joined into one ``(N,)`` tensor per name (fp32 empties for N = 0)."""
    if not pieces:
        empty = like.new_zeros(0, dtype=torch.float32)
        return {n: empty for n in names}
    if len(pieces) == 1:
        return dict(zip(names, pieces[0], strict=True))
    return {n: torch.cat([p[i] for p in pieces]) for i, n in enumerate(names)}
