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

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsepo.objectives.losses import TokenStats
from sparsepo.objectives.masks import normalize_layers
from sparsepo.training.lm_head import LMHead, chunked_token_stats, logit_transform
from sparsepo.training.packing import ONE_ROW, PackedPairs, pack_pairs
from sparsepo.training.varlen import supports_varlen, varlen


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


def lm_head(model: nn.Module | AdaptersOff) -> LMHead:
    """The model's LM head with its logit transform (see :func:`logit_transform`)."""
    hf = model.model if isinstance(model, AdaptersOff) else unwrap_model(model)
    return LMHead(hf.get_output_embeddings(), *logit_transform(hf.config))


def scatter_tokens(values: Tensor, where: Tensor) -> Tensor:
    """Place ``values`` (N,) at the True entries of ``where`` (rows, cols); zeros elsewhere. Differentiable."""
    flat = torch.zeros(where.numel(), dtype=values.dtype, device=values.device)
    return flat.index_put((where.reshape(-1).nonzero().squeeze(-1),), values).view_as(where)


@dataclass
class ReferenceOutputs:
    """What the frozen reference gives the policy step, all computed without gradient.

    ``last_hidden``: ``(2B, L, d)``; ``head``: the reference LM head; ``layers``: for learned masks, the hidden
    states of the transformer layers they read at the response positions only (those of :func:`response_positions`,
    in its order), normalised (``sparsepo.objectives.masks.normalize_layers``), ``(n_layers, N, d)`` fp32 (a
    fraction of the whole ``(2B, L, d)`` per layer, kept through the policy's step), or None;
    ``masks``: masks derived from reference activations (MaPO), ``(2B, L-1)``, or None; ``packed``: the
    shared-prompt packing the pass ran with (None: padded), for the policy pass to reuse; ``oracle``: the
    oracle model's final hidden states ``(2B, L, d)`` and LM head, for zoo weightings (``sparsepo.objectives.token_weights``).
    """

    last_hidden: Tensor
    head: nn.Module
    layers: Tensor | None = None
    masks: Tensor | None = None
    packed: PackedPairs | None = None
    oracle: tuple[Tensor, nn.Module] | None = None


@torch.no_grad()
def reference_forward(
    ref: nn.Module | AdaptersOff,
    batch: dict[str, Tensor],
    *,
    layers: str | None = None,
    hooks: Callable[[], AbstractContextManager] | None = None,
    packed: PackedPairs | None = None,
) -> ReferenceOutputs:
    """One no-grad reference pass over the concatenated batch (packed when ``packed`` is given); ``hooks`` may
    capture activations meanwhile (in the packed layout: see ``PackedPairs.unpack``). ``layers`` (``"all"`` or
    ``"last"``, as ``mask.layers``): keep those layers' hidden states at the response positions, normalised for
    the learned masks (``ReferenceOutputs.layers``)."""
    at = None
    if layers is not None:  # position t predicts token t+1: the response positions of the (2B, L) layout, last column never
        where = response_positions(batch)[0]
        at = F.pad(where, (0, 1)).reshape(-1).nonzero().squeeze(-1)
    with hooks() if hooks is not None else nullcontext():
        last, hs = pair_decoder_forward(ref, batch, packed, output_hidden_states=layers is not None, layers_at=at)
    normed = normalize_layers(hs if layers == "all" else hs[-1:]) if hs is not None else None
    return ReferenceOutputs(last_hidden=last, head=lm_head(ref), layers=normed, packed=packed)


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
