"""One preference-optimisation step's forward: reference pass, policy pass, masks, objective.

:class:`PreferenceModel` holds everything trainable (the policy and, for SparsePO, the mask networks) so a
single DDP wrapper synchronises both; :class:`Reference` holds the frozen reference. Both are used by the Ray
Train loop, the step benchmark and anyone with their own training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from sparsepo.objectives.losses import LossOutput, TokenStats, get_loss, loss_params, preference_loss
from sparsepo.objectives.masks import (
    ActivationMask,
    MaskConfig,
    build_mask_networks,
    learned_masks,
    model_dims,
)
from sparsepo.training.forward import (
    AdaptersOff,
    ReferenceOutputs,
    pair_packing,
    reference_forward,
    split_pairs,
    token_stats,
    unwrap_model,
)
from sparsepo.training.fused_head import use_fused


class Reference:
    """The frozen reference model: one no-grad pass per batch giving what the method needs."""

    def __init__(
        self, model: nn.Module | AdaptersOff, method: str, mask: MaskConfig | None = None, shared_prompt: bool = True,
        oracle: nn.Module | None = None, multi_pair: bool = True,
    ):
        shared = isinstance(model, AdaptersOff)
        # An own copy is frozen here; AdaptersOff (LoRA) shares the policy's frozen base and must stay as is.
        self.model = model if shared else model.eval().requires_grad_(False)
        self.spec = get_loss(method)
        self.mask_cfg = mask or MaskConfig()
        hooked = model.model if shared else model  # hooks live only in reference passes
        self.activation_mask = ActivationMask(hooked, self.mask_cfg.mapo) if self.spec.mask == "activation" else None
        self.shared_prompt = shared_prompt  # each pair's prompt runs once (sparsepo.training.packing)
        self.multi_pair = multi_pair  # every pair in one row, attention pair by pair (sparsepo.training.varlen)
        if self.spec.needs_oracle and oracle is None:
            raise ValueError(f"method {method!r} weighs tokens by an oracle model's reward: pass `oracle` (model.oracle)")
        # The oracle (zoo weightings) runs beside the reference, frozen, in the same packed layout.
        self.oracle = oracle.eval().requires_grad_(False) if oracle is not None and self.spec.needs_oracle else None

    def __call__(self, batch: dict[str, Tensor]) -> ReferenceOutputs:
        am = self.activation_mask
        packed = pair_packing(self.model, batch, self.multi_pair) if self.shared_prompt else None
        out = reference_forward(
            self.model, batch, layers=self.mask_cfg.layers if self.spec.mask == "learned" else None,
            hooks=am.capture if am is not None else None,
            packed=packed,
        )
        if am is not None:
            if packed is not None:
                am.remap(packed.unpack)
            out.masks = am.compute(out.last_hidden, out.head, batch["loss_mask"][:, 1:].float())
        if self.oracle is not None:
            oracle_out = reference_forward(self.oracle, batch, packed=packed)
            out.oracle = (oracle_out.last_hidden, oracle_out.head)
        return out


@dataclass
class StepOutput:
    """Per-pair objective output plus the per-token values of each side (for heatmaps and analysis)."""

    loss: Tensor
    result: LossOutput
    chosen: TokenStats
    rejected: TokenStats


class PreferenceModel(nn.Module):
    """The trainable part: ``policy`` plus, for learned-mask methods, ``masks`` (``{"reward"[, "kl"]}``)."""

    def __init__(
        self,
        policy: nn.Module,
        method: str,
        hparams: dict[str, float] | None = None,
        mask: MaskConfig | None = None,
        ref_dims: tuple[int, int] | None = None,
        chunk_size: int = 1024,
        log_kl: bool = False,
        shared_prompt: bool = True,
        fused_head: bool | str = False,
        multi_pair: bool = True,
    ):
        super().__init__()
        self.policy = policy
        self.spec = get_loss(method)
        self.hparams = loss_params(method, hparams)
        self.mask_cfg = mask or MaskConfig()
        self.chunk_size = chunk_size
        self.shared_prompt = shared_prompt  # each pair's prompt runs once (sparsepo.training.packing)
        self.multi_pair = multi_pair  # every pair in one row, attention pair by pair (sparsepo.training.varlen)
        self.fused_head = fused_head  # run.fused_head: True / False / "auto" (sparsepo.training.fused_head.use_fused)
        self.need_kl = self.spec.needs_kl or (log_kl and self.spec.needs_reference)
        self.masks: nn.ModuleDict | None = None
        if self.spec.mask == "learned":
            d, n = ref_dims or model_dims(policy)
            # Objectives without a KL term (SparsePO masks on SimPO, DPOP, IPO) read mu only: one network.
            net_cfg = self.mask_cfg if self.spec.needs_kl else replace(self.mask_cfg, sharing="common")
            self.masks = build_mask_networks(net_cfg, d, n)

    def forward(self, batch: dict[str, Tensor], ref_out: ReferenceOutputs | None) -> StepOutput:
        if self.spec.needs_reference and ref_out is None:
            raise ValueError(f"method {self.spec.name!r} needs reference outputs")
        packed = None
        if self.shared_prompt:  # the reference's packing where it suits the policy: one layout per batch
            packed = pair_packing(self.policy, batch, self.multi_pair, ref_out.packed if ref_out is not None else None)
        stats = token_stats(
            self.policy, batch, ref_out if self.spec.needs_reference else None, need_kl=self.need_kl,
            chunk_size=self.chunk_size, packed=packed, fused=self.fused(batch["input_ids"].device),
        )
        if self.masks is not None:
            mu, md = learned_masks(self.masks, ref_out.layers, stats.mask)
            stats = replace(stats, reward_mask=mu, kl_mask=md)
        elif self.spec.mask == "activation":
            stats = replace(stats, reward_mask=ref_out.masks.to(stats.logps.dtype))
        chosen, rejected = split_pairs(stats)
        result = preference_loss(self.spec.name, chosen, rejected, **self.hparams)
        return StepOutput(result.loss, result, result.chosen, result.rejected)

    @torch.no_grad()
    def calibrate_masks(self, batches: list[dict[str, Tensor]], ref_outs: list[ReferenceOutputs]) -> int:
        """The centred start of the learned masks (``mask.init=centred``) from the reference's hidden states
        of the response tokens of ``batches`` (the run's first ones). Returns the number of tokens used."""
        if self.masks is None or self.mask_cfg.init != "centred":
            return 0
        # ref_out.layers: the used layers' states at the response tokens, normalised (reference_forward)
        tokens = torch.cat([ref_out.layers for ref_out in ref_outs], dim=1)
        for net in self.masks.values():
            if hasattr(net, "calibrate_normalized"):
                net.calibrate_normalized(tokens, self.mask_cfg.init_sparsity)
        return int(tokens.shape[1])

    def fused(self, device: torch.device) -> bool:
        """Whether the LM head runs fused (``sparsepo.training.fused_head``) on ``device``."""
        return use_fused(self.fused_head, device, unwrap_model(self.policy).get_output_embeddings().weight.numel())


_FLOAT_DROPOUTS = ("attention_dropout", "dropout", "dropout_p", "dropout_prob", "attn_dropout", "attn_drop")


@torch.no_grad()
def disable_dropout(model: nn.Module) -> None:
    # Preference objectives compare log-probs of two forward passes; dropout noise would bias the margin.
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        # HF attention (llama, gpt_neox, ...) passes a float probability to the kernel, not a module.
        for name in _FLOAT_DROPOUTS:
            if isinstance(getattr(m, name, None), float):
                setattr(m, name, 0.0)
