"""Token-level forward passes: per-token log-probs and full-vocabulary token KL, computed in chunks.

A preference batch holds chosen and rejected sequences concatenated along the batch axis: ``2B`` rows of
``L`` tokens (see ``sparsepo.data.preference.PreferenceCollator``). Per-token outputs are aligned with the predicted
tokens: column ``t`` of a ``(2B, L-1)`` tensor belongs to token ``input_ids[:, t+1]``, predicted from hidden
position ``t``.

Memory: the LM head is applied here, only on response positions and ``chunk_size`` positions at a time, in
fp32, under activation checkpointing when there is more than one chunk, followed by the model's own logit
scaling or soft-capping (:func:`logit_transform`: Gemma-2, Cohere, Granite...). Neither model's
``(batch, tokens, vocab)`` logits or log-softmax are ever materialised whole, so peak memory grows with
``chunk_size * vocab``, not with the sequence length. With ``fused`` (``run.fused_head``) each chunk is computed by
:mod:`sparsepo.training.fused_head` instead: the same values and gradients from a compiled kernel with a hand-written backward.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from sparsepo.objectives.losses import TokenStats
from sparsepo.training.fused_head import fused_token_stats, head_transform
from sparsepo.training.packing import ONE_ROW, PackedPairs, pack_pairs
from sparsepo.training.varlen import supports_varlen, varlen

KL_DIRECTIONS = ("ref||pi", "pi||ref")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The Hugging Face causal LM inside DDP and PEFT wrappers (LoRA layers stay injected in it)."""
    while hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    return model


class AdaptersOff:
    """A peft (LoRA) policy seen with its adapters disabled: the frozen base weights it was built on.

    Under LoRA this is the reference model without loading a second copy. It stands wherever a reference
    model does (``decoder_forward``, ``lm_head``, ``Reference``, the evaluators' ``ref``); it is not an
    ``nn.Module``, so ``.eval()`` / ``requires_grad_`` on the reference cannot touch the policy.
    """

    def __init__(self, peft_model: nn.Module):
        if not hasattr(peft_model, "disable_adapter"):
            raise TypeError(f"AdaptersOff needs a peft model, got {type(peft_model).__name__}")
        if hasattr(unwrap_model(peft_model).get_output_embeddings(), "lora_A"):
            # ref logits are computed later from the head module, outside any disable_adapter() scope
            raise ValueError("the LM head carries LoRA weights: load the reference separately (model.ref)")
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.peft = peft_model
        self._layers = [m for m in peft_model.modules() if isinstance(m, BaseTunerLayer)]

    @property
    def model(self) -> nn.Module:
        """The HF causal LM inside (LoRA layers injected; off only inside ``adapters_off``)."""
        return unwrap_model(self.peft)

    @property
    def config(self):  # noqa: ANN201 - the HF model config
        return self.model.config

    @contextmanager
    def adapters_off(self) -> Iterator[None]:
        # peft's disable_adapter() would do the same, plus a model-status scan of every module and parameter
        # on each call (~35 ms per reference pass on SmolLM2).
        on = [m for m in self._layers if not m.disable_adapters]
        for m in on:
            m.enable_adapters(False)
        try:
            yield
        finally:
            for m in on:
                m.enable_adapters(True)


def decoder_forward(
    model: nn.Module | AdaptersOff,
    input_ids: Tensor,
    attention_mask: Tensor,
    output_hidden_states: bool = False,
    position_ids: Tensor | None = None,
    **attention_kwargs: Any,
) -> tuple[Tensor, tuple[Tensor, ...] | None]:
    """Run the decoder without its LM head.

    Returns the final hidden states ``(B, L, d)`` (after the final norm) and, if asked, the outputs of every
    transformer layer ``l = 1..n_layers`` (the embedding output is dropped), each ``(B, L, d)``.
    ``attention_mask`` is ``(B, L)`` padding, or a ready 4D mask (with ``position_ids``, for packed rows), or
    None with ``attention_kwargs`` for the attention function (``sparsepo.training.varlen``'s ``pair_segments``).
    Works for any HF causal LM: ``base_model`` is the decoder (``transformer``, ``model``, ``gpt_neox``...).
    """
    off = isinstance(model, AdaptersOff)
    extra = {"position_ids": position_ids} if position_ids is not None else {}
    with model.adapters_off() if off else nullcontext():
        decoder = (model.model if off else unwrap_model(model)).base_model
        out = decoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states, use_cache=False,
            **extra, **attention_kwargs,
        )
    layers = tuple(out.hidden_states[1:]) if output_hidden_states else None
    return out.last_hidden_state, layers


def pair_decoder_forward(
    model: nn.Module | AdaptersOff, batch: dict[str, Tensor], packed: PackedPairs | None, output_hidden_states: bool = False,
    layers_at: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, ...] | None]:
    """``decoder_forward`` of a concatenated pair batch, run packed (shared prompts) when ``packed`` is given.

    Outputs are in the padded batch's layout either way: ``(2B, L, d)``. ``layers_at``: flat positions ``(N,)``
    of that ``(2B, L)`` layout; given, each layer's states are returned there only, ``(N, d)``, taken straight
    from the pass's own layout (no ``(2B, L, d)`` copy of every layer is made).
    """
    if packed is None:
        last, layers = decoder_forward(model, batch["input_ids"], batch["attention_mask"], output_hidden_states)
        return last, _layer_states(layers, None, layers_at)
    inner = model.model if isinstance(model, AdaptersOff) else unwrap_model(model)
    if supports_varlen(inner):  # each pair's attention alone: no (T, T) mask
        with varlen(inner.config):
            last, layers = decoder_forward(model, packed.input_ids, None, output_hidden_states, packed.position_ids,
                                           pair_segments=packed.row_segments)
    else:
        mask = packed.attention_mask(inner.config._attn_implementation, next(inner.parameters()).dtype)
        last, layers = decoder_forward(model, packed.input_ids, mask, output_hidden_states, packed.position_ids)
    return packed.unpack(last), _layer_states(layers, packed, layers_at)


def _layer_states(
    layers: tuple[Tensor, ...] | None, packed: PackedPairs | None, at: Tensor | None
) -> tuple[Tensor, ...] | None:
    """Per-layer states in the padded layout ``(2B, L, d)``, or at its flat positions ``at`` only ``(N, d)``."""
    if layers is None:
        return None
    if at is None:
        return tuple(packed.unpack(h) for h in layers) if packed is not None else layers
    flat = packed.index.reshape(-1)[at] if packed is not None else at
    return tuple(h.reshape(-1, h.shape[-1])[flat] for h in layers)


def pair_packing(
    model: nn.Module | AdaptersOff, batch: dict[str, Tensor], multi_pair: bool, reuse: PackedPairs | None = None
) -> PackedPairs | None:
    """Shared-prompt packing of a pair batch for ``model``: every pair in one row where its attention can run
    pair by pair (``sparsepo.training.varlen``), else one pair per row (a dense mask over several pairs costs more
    attention than the padding it saves); None when the batch is not pairs sharing prompts. ``reuse``: another
    model's packing of the same batch, returned when it has the layout ``model`` wants (one layout per batch)."""
    inner = model.model if isinstance(model, AdaptersOff) else unwrap_model(model)
    budget = ONE_ROW if multi_pair and supports_varlen(inner) else None
    if reuse is not None and reuse.row_tokens == budget:
        return reuse
    return pack_pairs(batch, budget)


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
                "sparsepo.training.forward.logit_transform does not know: its log-probs would be wrong. Add it there."
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


def lm_head(model: nn.Module | AdaptersOff) -> LMHead:
    """The model's LM head with its logit transform (see :func:`logit_transform`)."""
    hf = model.model if isinstance(model, AdaptersOff) else unwrap_model(model)
    return LMHead(hf.get_output_embeddings(), *logit_transform(hf.config))


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


def scatter_tokens(values: Tensor, where: Tensor) -> Tensor:
    """Place ``values`` (N,) at the True entries of ``where`` (rows, cols); zeros elsewhere. Differentiable."""
    flat = torch.zeros(where.numel(), dtype=values.dtype, device=values.device)
    return flat.index_put((where.reshape(-1).nonzero().squeeze(-1),), values).view_as(where)


@dataclass
class ReferenceOutputs:
    """What the frozen reference gives the policy step, all computed without gradient.

    ``last_hidden``: ``(2B, L, d)``; ``head``: the reference LM head; ``layers``: for learned masks, each transformer
    layer's hidden states at the response positions only (those of :func:`response_positions`, in its order),
    ``(N, d)`` each (a fraction of the whole ``(2B, L, d)``, kept through the policy's step), or None;
    ``masks``: masks derived from reference activations (MaPO), ``(2B, L-1)``, or None; ``packed``: the
    shared-prompt packing the pass ran with (None: padded), for the policy pass to reuse; ``oracle``: the
    oracle model's final hidden states ``(2B, L, d)`` and LM head, for zoo weightings (``sparsepo.objectives.token_weights``).
    """

    last_hidden: Tensor
    head: nn.Module
    layers: tuple[Tensor, ...] | None = None
    masks: Tensor | None = None
    packed: PackedPairs | None = None
    oracle: tuple[Tensor, nn.Module] | None = None


@torch.no_grad()
def reference_forward(
    ref: nn.Module | AdaptersOff,
    batch: dict[str, Tensor],
    *,
    layers: bool = False,
    hooks: Callable[[], AbstractContextManager] | None = None,
    packed: PackedPairs | None = None,
) -> ReferenceOutputs:
    """One no-grad reference pass over the concatenated batch (packed when ``packed`` is given); ``hooks`` may
    capture activations meanwhile (in the packed layout: see ``PackedPairs.unpack``). ``layers``: keep every
    layer's hidden states at the response positions (``ReferenceOutputs.layers``)."""
    at = None
    if layers:  # position t predicts token t+1: the response positions of the (2B, L) layout, last column never
        where = response_positions(batch)[0]
        at = F.pad(where, (0, 1)).reshape(-1).nonzero().squeeze(-1)
    with hooks() if hooks is not None else nullcontext():
        last, hs = pair_decoder_forward(ref, batch, packed, output_hidden_states=layers, layers_at=at)
    return ReferenceOutputs(last_hidden=last, head=lm_head(ref), layers=hs, packed=packed)


def response_positions(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``(where (2B, L-1) bool, labels (N,))``: positions whose next token is a response token."""
    where = batch["loss_mask"][:, 1:].bool()
    return where, batch["input_ids"][:, 1:][where]


def token_stats(
    policy: nn.Module,
    batch: dict[str, Tensor],
    ref_out: ReferenceOutputs | None,
    *,
    need_kl: bool,
    chunk_size: int = 1024,
    packed: PackedPairs | None = None,
    fused: bool = False,
) -> TokenStats:
    """Per-token statistics of the policy on a concatenated batch, each ``(2B, L-1)``; masks are not set.

    ``ref_out`` None means reference-free (SimPO): only ``logps`` is computed and the reference never runs.
    ``packed``: run the policy with shared prompts (``sparsepo.training.packing``); the values are those of the padded pass.
    ``fused``: the fused LM head (``sparsepo.training.fused_head``) instead of the autograd one; same values.
    """
    h, _ = pair_decoder_forward(policy, batch, packed)
    where, labels = response_positions(batch)
    h_ref = ref_out.last_hidden[:, :-1][where] if ref_out is not None else None
    stats = chunked_token_stats(
        h[:, :-1][where],
        labels,
        lm_head(policy),
        h_ref,
        ref_out.head if ref_out is not None else None,
        kl_direction="ref||pi" if need_kl else None,
        chunk_size=chunk_size,
        fused=fused,
    )
    if ref_out is not None and ref_out.oracle is not None:
        h_oracle, oracle_head = ref_out.oracle
        with torch.no_grad():
            oracle = chunked_token_stats(h_oracle[:, :-1][where], labels, oracle_head, kl_direction=None,
                                         chunk_size=chunk_size)
        stats["oracle_logps"] = oracle["logps"]
    full = {k: scatter_tokens(v, where) for k, v in stats.items()}
    return TokenStats(mask=where.to(full["logps"].dtype), **full)


def split_pairs(stats: TokenStats) -> tuple[TokenStats, TokenStats]:
    """Split a concatenated ``(2B, ...)`` TokenStats into its chosen (first B rows) and rejected halves."""
    b = stats.logps.shape[0] // 2

    def half(x: Tensor | None, sl: slice) -> Tensor | None:
        return None if x is None else x[sl]

    sides = []
    for sl in (slice(0, b), slice(b, None)):
        sides.append(TokenStats(**{k: half(v, sl) for k, v in vars(stats).items()}))
    return sides[0], sides[1]
