"""The fused LM head: label log-probs and full-vocabulary token KL of a chunk of positions, with a hand-written
backward that never builds the autograd graph of the ``(chunk, vocab)`` log-softmaxes.

Per chunk of ``C`` positions the forward keeps only the two head matmuls' outputs ``z`` / ``z_ref`` ``(C, V)``
and reduces them in one pass each (``torch.compile`` fuses transform, logsumexp, softmax-weighted sums: no
``(C, V)`` log-softmax, softmax or difference tensor is written). The backward needs the policy's logit gradient

    d logp_y / dz = onehot(y) - p
    d KL(ref||pi) / dz = p - p_ref
    d KL(pi||ref) / dz = p * (log p - log p_ref - KL)

(``p = softmax(z)``, ``z`` after the model's scale / soft-cap, whose derivative is chained on), again one fused
``(C, V)`` expression, then two matmuls for the hidden-state and head-weight gradients. With ``recompute`` the
chunk's ``z`` / ``z_ref`` are not kept but recomputed in backward (memory: one chunk); without, they are kept
(the single-chunk case, where recomputing would only cost two matmuls).

The reference (``chunked_token_stats`` in :mod:`sparsepo.training.forward`) computes the same values with autograd;
``tests/sparsepo/training/test_fused_head.py`` holds the two equal in values and gradients.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger("sparsepo.training.fused_head")

# kl mode: which token KL a chunk computes
NO_KL, REF_PI, PI_REF = 0, 1, 2
KL_MODES = {None: NO_KL, "ref||pi": REF_PI, "pi||ref": PI_REF}


def _transform(z: Tensor, scale: float, softcap: float | None) -> Tensor:
    z = z * scale if scale != 1.0 else z
    return softcap * torch.tanh(z / softcap) if softcap else z


def _transform_grad(g: Tensor, z_lin: Tensor, scale: float, softcap: float | None) -> Tensor:
    """``g`` (w.r.t. the transformed logits) chained through :func:`_transform` to the head's linear output."""
    if softcap:
        t = torch.tanh(z_lin * (scale / softcap))
        g = g * (1.0 - t * t)
    return g * scale if scale != 1.0 else g


def _label(z: Tensor, y: Tensor) -> Tensor:
    return z.gather(-1, y[:, None]).squeeze(-1)


def chunk_forward_math(
    z_lin: Tensor, zr_lin: Tensor | None, y: Tensor, head: tuple[float, float | None], ref_head: tuple[float, float | None],
    kl_mode: int,
) -> tuple[Tensor, ...]:
    """``(logp, lse, ref_logp, ref_lse, kl)`` of one chunk (each ``(C,)``) from the heads' linear outputs
    ``(C, V)``; the reference's entries are empty tensors without a reference, ``kl`` without a KL."""
    z = _transform(z_lin, *head)
    lse = z.logsumexp(-1)
    logp = _label(z, y) - lse
    empty = z.new_empty(0)
    if zr_lin is None:
        return logp, lse, empty, empty, empty
    zr = _transform(zr_lin, *ref_head)
    lser = zr.logsumexp(-1)
    ref_logp = _label(zr, y) - lser
    if kl_mode == NO_KL:
        return logp, lse, ref_logp, lser, empty
    # log p_ref - log p per entry, as (zr - lser) - (z - lse): the eager reference's order, without its tensors
    d = (zr - z) + (lse - lser)[:, None]
    if kl_mode == REF_PI:
        kl = (torch.exp(zr - lser[:, None]) * d).sum(-1)
    else:
        kl = -(torch.exp(z - lse[:, None]) * d).sum(-1)
    return logp, lse, ref_logp, lser, kl


def chunk_grad_math(
    z_lin: Tensor, zr_lin: Tensor | None, y: Tensor, lse: Tensor, lser: Tensor, kl: Tensor, g_logp: Tensor,
    g_kl: Tensor, head: tuple[float, float | None], ref_head: tuple[float, float | None], kl_mode: int,
) -> Tensor:
    """The gradient w.r.t. the policy head's linear output ``(C, V)`` given those w.r.t. ``logp`` and ``kl`` ``(C,)``."""
    z = _transform(z_lin, *head)
    p = torch.exp(z - lse[:, None])
    hit = torch.arange(z.shape[-1], device=z.device)[None, :] == y[:, None]
    g = (hit.to(z.dtype) - p) * g_logp[:, None]
    if kl_mode == REF_PI:
        zr = _transform(zr_lin, *ref_head)
        g = g + (p - torch.exp(zr - lser[:, None])) * g_kl[:, None]
    elif kl_mode == PI_REF:
        zr = _transform(zr_lin, *ref_head)
        d = (z - zr) - (lse - lser)[:, None]  # log p - log p_ref
        g = g + p * (d - kl[:, None]) * g_kl[:, None]
    return _transform_grad(g, z_lin, *head)


@functools.cache
def _compiled(fn_name: str) -> Any:
    # dynamic=True: one graph for every chunk length (the last chunk of a step is shorter), not one per N.
    return torch.compile(globals()[fn_name], dynamic=True)


_COMPILE_FAILED: set[str] = set()


def _math(fn_name: str, compiled: bool) -> Any:
    eager = globals()[fn_name]
    if not compiled or fn_name in _COMPILE_FAILED:
        return eager

    def run(*args: Any) -> Any:
        try:
            return _compiled(fn_name)(*args)
        except Exception as err:  # no C++ compiler / Triton on this host: same values, uncompiled
            _COMPILE_FAILED.add(fn_name)
            log.warning(f"[sparsepo] torch.compile of the fused LM head failed ({type(err).__name__}: {err}); "
                        "running it uncompiled")
            return eager(*args)  # a genuine error in the inputs raises here again

    return run


def _linear(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    with torch.autocast(device_type=h.device.type, enabled=False):
        return F.linear(h, w, b)


class FusedChunk(torch.autograd.Function):
    """One chunk: ``(logp, ref_logp, kl)`` ``(C,)`` each from hidden states and fp32 head weights.

    Inputs: ``h`` ``(C, d)`` and ``w`` ``(V, d)`` / ``b`` ``(V,)`` in the same float dtype (gradients flow to
    these three); ``hr``, ``wr``, ``br`` the reference's (no gradient; ``hr`` None: no reference); ``y`` ``(C,)``.
    ``cfg``: ``(head, ref_head, kl_mode, recompute, compiled)``, heads as ``(scale, softcap)``.
    Outputs without a reference / a KL are empty tensors.
    """

    @staticmethod
    def forward(ctx: Any, h: Tensor, w: Tensor, b: Tensor | None, hr: Tensor | None, wr: Tensor | None,
                br: Tensor | None, y: Tensor, cfg: tuple) -> tuple[Tensor, Tensor, Tensor]:
        head, ref_head, kl_mode, recompute, compiled = cfg
        z_lin = _linear(h, w, b)
        zr_lin = _linear(hr, wr, br) if hr is not None else None
        logp, lse, ref_logp, lser, kl = _math("chunk_forward_math", compiled)(z_lin, zr_lin, y, head, ref_head, kl_mode)
        keep = (None, None) if recompute else (z_lin, zr_lin if kl_mode != NO_KL else None)
        ctx.cfg = cfg
        ctx.save_for_backward(h, w, b, hr, wr, br, y, lse, lser, kl, *keep)
        ctx.mark_non_differentiable(ref_logp)
        return logp, ref_logp, kl

    @staticmethod
    def backward(ctx: Any, g_logp: Tensor | None, _g_ref: Tensor | None, g_kl: Tensor | None) -> tuple:
        h, w, b, hr, wr, br, y, lse, lser, kl, z_lin, zr_lin = ctx.saved_tensors
        head, ref_head, kl_mode, _, compiled = ctx.cfg
        if z_lin is None:
            z_lin = _linear(h, w, b)
            zr_lin = _linear(hr, wr, br) if kl_mode != NO_KL else None
        zeros = lse.new_zeros(lse.shape)
        g_logp = g_logp if g_logp is not None else zeros
        g_kl = g_kl if g_kl is not None and kl_mode != NO_KL else zeros
        g = _math("chunk_grad_math", compiled)(z_lin, zr_lin, y, lse, lser, kl, g_logp, g_kl, head, ref_head, kl_mode)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        with torch.autocast(device_type=h.device.type, enabled=False):
            gh = g @ w if need_h else None
            gw = g.t() @ h if need_w else None
            gb = g.sum(0) if need_b and b is not None else None
        return gh, gw, gb, None, None, None, None, None


def head_transform(head: torch.nn.Module) -> tuple[float, float | None]:
    """``(scale, softcap)`` of an ``LMHead`` (see ``sparsepo.training.lm_head.logit_transform``); a bare projection's is none."""
    return float(getattr(head, "scale", 1.0)), getattr(head, "softcap", None)


def fused_token_stats(
    h: Tensor, y: Tensor, w: Tensor, b: Tensor | None, head: tuple[float, float | None], ref: tuple | None,
    kl_direction: str | None, chunk_size: int, recompute: bool, compiled: bool,
) -> list[tuple[Tensor, ...]]:
    """Per chunk of ``chunk_size`` positions, ``(logps[, ref_logps[, kl]])`` as ``chunked_token_stats`` returns them.

    ``h`` ``(N, d)`` and ``w`` / ``b`` in one float dtype; ``ref``: ``(h_ref, w_ref, b_ref, ref_head)`` or None.
    """
    mode = KL_MODES[kl_direction] if ref is not None else NO_KL
    hr_all, wr, br, ref_head = ref if ref is not None else (None, None, None, (1.0, None))
    cfg = (head, ref_head, mode, recompute, compiled)
    pieces = []
    for start in range(0, y.shape[0], chunk_size):
        sl = slice(start, start + chunk_size)
        hr = hr_all[sl] if hr_all is not None else None
        logp, ref_logp, kl = FusedChunk.apply(h[sl], w, b, hr, wr, br, y[sl], cfg)
        pieces.append((logp,) + ((ref_logp,) + ((kl,) if mode != NO_KL else ()) if hr is not None else ()))
    return pieces


def use_fused(setting: bool | str, device: torch.device, head_size: int) -> bool:
    """The ``run.fused_head`` switch: True / False, or ``"auto"``: on where it measured faster (``AUTO_ON``
    device kinds) for a head of ``head_size`` = vocab x hidden >= ``AUTO_MIN_HEAD`` (below, compiling costs more
    than it saves: tiny test models)."""
    if setting == "auto":
        return device.type in AUTO_ON and head_size >= AUTO_MIN_HEAD
    if not isinstance(setting, bool):
        raise ValueError(f"run.fused_head must be true, false or 'auto', got {setting!r}")
    return setting


# Device kinds on which the fused head measured faster than the autograd one. CPU (2 shared cores, AVX512-BF16,
# bf16 autocast; `sparsepo bench step --fused-head both`, SmolLM2-135M, 2 pairs x 128 tokens): step time x0.87
# (tdpo2, token KL) and x0.93 (dpo), peak RSS x1.02, first step +10 s (compile, warm Inductor cache; cold:
# 40-75 s). CUDA: not measured yet, so off (`run.fused_head=true` forces it).
AUTO_ON: frozenset[str] = frozenset({"cpu"})
AUTO_MIN_HEAD = 1 << 22  # SmolLM2-135M's head is 49152 x 576 = 28M; the tiny test models' ~1000 x 64
