"""Token masks for SparsePO: learned mask networks and the MaPO activation mask, registered by name.

Every mask returns one value per predicted token, ``(B, L-1)``, aligned like ``sparsepo.training.forward`` outputs:
column ``t`` weights token ``t+1`` and is computed from the reference at hidden position ``t``.
Masks read only what any Hugging Face causal LM returns (hidden states, and forward hooks on the blocks found
by :func:`find_blocks`), so no per-architecture modelling code is needed.

Learned kinds (``learned``, ``binary``, ``random``) are ``nn.Module`` s taking the reference's per-layer hidden
states; ``activation`` (MaPO) is parameter-free and computed from hooked reference activations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from sparsepo.objectives.mask_config import MaskConfig

MAPO_KINDS = ("mlp", "attn", "resid", "logits")
MASK_NORM_EPS = 1e-5  # the mask networks' LayerNorm eps; the reference normalises its states with it once


class LearnedMask(nn.Module):
    """m_t = ReLU(sum_l c_l * g_l(t) + b),  g_l(t) = ReLU(f_l(LN(h_l(t)))); see METHODS.md "learned mask network".

    ``f_l`` is ``Linear(d, 1)`` (depth 1) or ``Linear(d, hidden) -> ReLU -> Linear(hidden, 1)`` (depth 2); one
    LayerNorm is shared by all layers. ``binary`` makes the forward value 1[z > 0] of the merged pre-activation z,
    with a straight-through gradient (dm/dz = 1). The merge offset ``b`` is trained only with ``offset=True``
    (the centred start, which :meth:`calibrate` sets); otherwise it stays 0, as in the specification.
    """

    def __init__(
        self, hidden_size: int, n_layers: int, depth: int = 1, binary: bool = False, hidden: int = 200,
        offset: bool = True,
    ):
        super().__init__()
        if depth not in (1, 2):
            raise ValueError(f"mask depth must be 1 or 2, got {depth}")
        self.norm = nn.LayerNorm(hidden_size, eps=MASK_NORM_EPS)

        def head() -> nn.Module:
            if depth == 1:
                return nn.Linear(hidden_size, 1)
            return nn.Sequential(nn.Linear(hidden_size, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        self.per_layer = nn.ModuleList(head() for _ in range(n_layers))
        self.merge = nn.Linear(n_layers, 1, bias=True)
        self.binary = binary
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.merge.bias.requires_grad_(offset)  # the specification's merge has none: 0, frozen
        self._register_load_state_dict_pre_hook(_zero_missing_merge_bias)

    def layer_outputs(self, hidden_states: Sequence[Tensor]) -> Tensor:
        """``hidden_states``: one ``(..., d)`` tensor per used layer -> g, ``(..., n_layers)``, >= 0."""
        return self.layer_outputs_normalized(normalize_layers(hidden_states, self.norm.eps, self.merge.weight.dtype))

    def layer_outputs_normalized(self, normed: Tensor) -> Tensor:
        """g ``(..., n_layers)`` from :func:`normalize_layers`' output ``(n_layers, ..., d)``: the LayerNorm's
        affine part and each layer's head, in fp32 (autocast off: a few MFLOP, and exact masks near the ReLU's 0)."""
        if normed.shape[0] != len(self.per_layer):
            raise ValueError(f"mask built for {len(self.per_layer)} layers, got {normed.shape[0]}")
        gamma, beta = self.norm.weight, self.norm.bias
        with torch.autocast(device_type=normed.device.type, enabled=False):
            if isinstance(self.per_layer[0], nn.Linear):  # depth 1: w . (n * gamma + beta) + b, all layers in one bmm
                w = torch.cat([f.weight for f in self.per_layer])  # (n_layers, d)
                b = torch.cat([f.bias for f in self.per_layer]) + w @ beta
                flat = normed.reshape(normed.shape[0], -1, normed.shape[-1])
                z = torch.bmm(flat, (w * gamma)[:, :, None]).squeeze(-1).t() + b  # (positions, n_layers)
                return torch.relu(z).reshape(*normed.shape[1:-1], len(self.per_layer))
            return torch.stack(
                [torch.relu(f(n * gamma + beta)).squeeze(-1) for f, n in zip(self.per_layer, normed, strict=True)], dim=-1
            )

    def forward(self, hidden_states: Sequence[Tensor]) -> Tensor:
        """``hidden_states``: one ``(B, T, d)`` tensor per used layer -> mask ``(B, T)``, >= 0."""
        return self.forward_normalized(normalize_layers(hidden_states, self.norm.eps, self.merge.weight.dtype))

    def forward_normalized(self, normed: Tensor) -> Tensor:
        """The mask ``(...)`` from :func:`normalize_layers`' output ``(n_layers, ..., d)`` (shared by every network)."""
        with torch.autocast(device_type=normed.device.type, enabled=False):
            z = self.merge(self.layer_outputs_normalized(normed)).squeeze(-1)
        if self.binary:
            hard = (z > 0).to(z.dtype)
            return z + (hard - z).detach()
        return torch.relu(z)

    @torch.no_grad()
    def calibrate(self, tokens: Sequence[Tensor], sparsity: float) -> None:
        """The centred start from the reference's hidden states of N response tokens, ``(N, d)`` per used layer
        (see :meth:`calibrate_normalized`)."""
        self.calibrate_normalized(normalize_layers(tokens, self.norm.eps, self.merge.weight.dtype), sparsity)

    @torch.no_grad()
    def calibrate_normalized(self, normed: Tensor, sparsity: float) -> None:
        """The centred start, from response tokens of the run's own data (METHODS.md "Initialisation").

        ``normed``: :func:`normalize_layers` of the reference's hidden states of N response tokens,
        ``(n_layers, N, d)``. Each layer's head is rescaled so its pre-activation has mean 0 and standard
        deviation 1 over the tokens (half of them pass its ReLU); the merge weighs the layers equally and its
        offset puts the ``sparsity`` quantile of the merged value at 0; finally the merge is scaled so the
        non-zero mask values average 1.
        """
        g = []
        gamma, beta = self.norm.weight, self.norm.bias
        for f, n in zip(self.per_layer, normed.to(self.merge.weight.dtype), strict=True):
            out = f[-1] if isinstance(f, nn.Sequential) else f
            z = f(n * gamma + beta).squeeze(-1).float()
            mean, std = z.mean(), z.std().clamp_min(1e-6)
            out.weight.div_(std)
            out.bias.sub_(mean).div_(std)
            g.append(torch.relu((z - mean) / std))
        merged = torch.stack(g, dim=-1).mean(-1)
        cut = torch.quantile(merged, sparsity)
        kept = (merged - cut)[merged > cut]
        scale = 1.0 / kept.mean().clamp_min(1e-6) if kept.numel() else torch.tensor(1.0)
        self.merge.weight.fill_(float(scale) / len(g))
        self.merge.bias.fill_(float(-cut * scale))


def _zero_missing_merge_bias(state: dict, prefix: str, *_args: object) -> None:
    # Masks saved before the merge had an offset: theirs was 0.
    key = prefix + "merge.bias"
    if key not in state and prefix + "merge.weight" in state:
        state[key] = torch.zeros(1, dtype=state[prefix + "merge.weight"].dtype)


class RandomMask(nn.Module):
    """Ablation: a fresh U[0, 1) value per token at every step; no parameters."""

    def forward(self, hidden_states: Sequence[Tensor]) -> Tensor:
        """One value per position of ``hidden_states[0]`` ``(..., d)`` -> ``(...)``."""
        h = hidden_states[0]
        return torch.rand(h.shape[:-1], device=h.device)


# kind -> network; MaskConfig.kind lists these names (the config loads without torch)
MASKS: dict[str, Callable[[int, int, MaskConfig], nn.Module]] = {
    "learned": lambda d, n, c: LearnedMask(d, n, c.depth, binary=False, hidden=c.hidden, offset=c.init == "centred"),
    "binary": lambda d, n, c: LearnedMask(d, n, c.depth, binary=True, hidden=c.hidden, offset=c.init == "centred"),
    "random": lambda d, n, c: RandomMask(),
}


def model_dims(model: nn.Module) -> tuple[int, int]:
    """(hidden size, number of transformer layers) of any HF causal LM."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(cfg.hidden_size), int(cfg.num_hidden_layers)


def build_mask_networks(cfg: MaskConfig, hidden_size: int, n_layers: int) -> nn.ModuleDict:
    """``{"reward": net}`` (common) or ``{"reward": net, "kl": net}`` (independent) for a learned mask kind."""
    if cfg.kind not in MASKS:
        raise KeyError(f"unknown mask kind {cfg.kind!r}; registered: {sorted(MASKS)}")
    if cfg.layers not in ("all", "last"):
        raise ValueError(f"mask layers must be 'all' or 'last', got {cfg.layers!r}")
    if cfg.sharing not in ("independent", "common"):
        raise ValueError(f"mask sharing must be 'independent' or 'common', got {cfg.sharing!r}")
    n = n_layers if cfg.layers == "all" else 1
    names = ["reward"] if cfg.sharing == "common" else ["reward", "kl"]
    return nn.ModuleDict({name: MASKS[cfg.kind](hidden_size, n, cfg) for name in names})


def select_layers(layers: Sequence[Tensor], which: str) -> list[Tensor]:
    """Hidden states a mask reads, shifted to predict-next alignment: each ``(B, L-1, d)``."""
    used = layers if which == "all" else layers[-1:]
    return [h[:, :-1] for h in used]


def normalize_layers(
    hidden_states: Sequence[Tensor], eps: float = MASK_NORM_EPS, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``(h - mean) / sqrt(var + eps)`` over features of each layer's ``(..., d)`` states in ``dtype``, stacked:
    ``(n_layers, ..., d)``. The LayerNorm's parameter-free part, which every mask network shares: the reference
    computes it once (``sparsepo.training.forward.reference_forward``), and the networks' first product saves
    this very tensor for backward, so the states are held once, not raw and normalised."""
    h0 = hidden_states[0]
    out = torch.empty((len(hidden_states), *h0.shape), dtype=dtype, device=h0.device)
    with torch.autocast(device_type=h0.device.type, enabled=False):
        for i, h in enumerate(hidden_states):  # layer by layer: no second full-size copy, as stack() would make
            out[i] = nn.functional.layer_norm(h.to(dtype), h.shape[-1:], eps=eps)
    return out


def learned_masks(masks: nn.ModuleDict, normed: Tensor, token_mask: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(mu, md)`` ``(B, L-1)`` from the networks ``masks`` (``{"reward"[, "kl"]}``; md None without "kl"), zero
    off the response ``token_mask`` ``(B, L-1)``.

    ``normed``: the reference's per-layer hidden states the masks read, at the response positions only and
    normalised (:func:`normalize_layers`), ``(n_layers, N, d)``, positions in ``token_mask``'s row-major order
    (``sparsepo.training.forward.ReferenceOutputs.layers``). Prompt and padding positions, whose mask would be
    multiplied by 0, cost neither time nor saved activations.
    """
    where = token_mask > 0
    out = []
    for net in masks.values():
        m = net.forward_normalized(normed.to(net.merge.weight.dtype)) if isinstance(net, LearnedMask) else net(normed)
        out.append(torch.zeros(where.shape, dtype=m.dtype, device=m.device).index_put((where,), m))
    return out[0], out[1] if len(out) > 1 else None


def decay_groups(masks: nn.Module, weight_decay: float, lr: float | None = None) -> list[dict]:
    """AdamW groups for mask networks: decay on Linear weights only (not LayerNorm, not biases); frozen
    parameters (the specification's merge offset) are left out. ``lr``: the groups' own rate (None: the optimizer's)."""
    decay, no_decay = [], []
    for module in masks.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(p)
    own = {"lr": lr} if lr is not None else {}
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "mask_decay", **own}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "mask_no_decay", **own})
    return groups


# ---------------------------------------------------------------------------------------------- MaPO


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of any HF causal LM: the ModuleList with one entry per hidden layer."""
    _, n_layers = model_dims(model)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"no ModuleList of {n_layers} blocks found in {type(model).__name__}")


def _child(block: nn.Module, pattern: str) -> nn.Module | None:
    for name, child in block.named_children():
        if re.fullmatch(pattern, name):
            return child
    return None


def _mlp_activation(mlp: nn.Module) -> nn.Module:
    # The activation function's output (the MLP's hidden features); fall back to the MLP output.
    for name, m in mlp.named_modules():
        if name and (re.fullmatch(r"act(_fn)?|activation(_fn)?", name.split(".")[-1]) or "Activation" in type(m).__name__):
            return m
    return mlp


def hook_points(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Per kind (mlp, attn, resid), the module of each block whose output is hooked."""
    points: dict[str, list[nn.Module]] = {"mlp": [], "attn": [], "resid": []}
    for i, block in enumerate(find_blocks(model)):
        attn = _child(block, r"(self_)?(attn|attention)")
        mlp = _child(block, r"mlp|feed_forward|ffn|block_sparse_moe")
        if attn is None or mlp is None:
            raise ValueError(f"block {i} of {type(model).__name__} has no attention/MLP child: {list(dict(block.named_children()))}")
        points["attn"].append(attn)
        points["mlp"].append(_mlp_activation(mlp))
        points["resid"].append(block)
    return points


def normalise_per_sequence(a: Tensor, mask: Tensor) -> Tensor:
    """METHODS.md MaPO step 3 for ``a`` (B, T) over response tokens ``mask`` (B, T): z-score, then min-max to [0, 1].

    A sequence with one response token (or a constant activation) gets m = 1. Off-response entries are 0.
    """
    a = a.float()
    keep = mask > 0
    n = keep.sum(-1, keepdim=True).clamp(min=1)
    mean = (a * keep).sum(-1, keepdim=True) / n
    std = (((a - mean) ** 2) * keep).sum(-1, keepdim=True).div(n).sqrt()
    z = (a - mean) / (std + 1e-12)
    lo = torch.where(keep, z, torch.inf).amin(-1, keepdim=True)
    hi = torch.where(keep, z, -torch.inf).amax(-1, keepdim=True)
    span = hi - lo
    m = torch.where(span > 0, (z - lo) / span.clamp(min=1e-30), torch.ones_like(z))
    return m * keep


class ActivationMask:
    """MaPO: a fixed mask from the reference's own activations (mean over features at the predicting position).

    ``kinds``: one of ``mlp, attn, resid, logits``, ``all`` (the four) or ``uniform`` (all ones: TDPO v1).
    Use :meth:`capture` around the reference forward, then :meth:`compute`.
    """

    def __init__(self, model: nn.Module, kinds: str = "all"):
        if kinds not in (*MAPO_KINDS, "all", "uniform"):
            raise ValueError(f"MaPO mask kind must be one of {MAPO_KINDS + ('all', 'uniform')}, got {kinds!r}")
        self.kinds = MAPO_KINDS if kinds == "all" else (() if kinds == "uniform" else (kinds,))
        self.model = model
        self._points = {k: v for k, v in hook_points(model).items() if k in self.kinds}
        self._captured: dict[str, list[Tensor]] = {}

    @contextmanager
    def capture(self) -> Iterator[None]:
        self._captured = {k: [] for k in self._points}

        def hook_for(kind: str) -> Callable:
            def hook(_module: nn.Module, _inputs: object, output: object) -> None:
                out = output[0] if isinstance(output, tuple) else output
                self._captured[kind].append(out.detach().float().mean(-1))

            return hook

        handles = [m.register_forward_hook(hook_for(k)) for k, mods in self._points.items() for m in mods]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def remap(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Apply ``fn`` to every captured activation (e.g. from a packed pass back to the padded layout)."""
        self._captured = {k: [fn(a) for a in acts] for k, acts in self._captured.items()}

    @torch.no_grad()
    def compute(self, last_hidden: Tensor, head: nn.Module, token_mask: Tensor) -> Tensor:
        """Mask ``(B, L-1)`` in [0, 1] on response tokens, from the last :meth:`capture` and the final hidden states."""
        if not self.kinds:
            return token_mask.float().clone()
        per_kind = []
        for kind in self.kinds:
            if kind == "logits":
                # mean_v(W h + b) = h . mean_v(W) + mean(b): the logits' feature mean without materialising them.
                w = head.weight.float().mean(0)
                b = head.bias.float().mean() if getattr(head, "bias", None) is not None else 0.0
                acts = [last_hidden.float() @ w + b]
            else:
                acts = self._captured.get(kind) or []
                if not acts:
                    raise RuntimeError("ActivationMask.compute() called without a captured reference forward")
            per_kind.append(torch.stack([normalise_per_sequence(a[:, :-1], token_mask) for a in acts]).mean(0))
        return torch.stack(per_kind).mean(0) * token_mask
