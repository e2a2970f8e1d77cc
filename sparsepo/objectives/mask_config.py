"""The ``mask:`` section of a training config. Apart from the networks (``sparsepo.objectives.masks``), so a config
loads and is checked without torch; ``kind`` lists the keys of ``masks.MASKS`` (tests/sparsepo/objectives/test_masks.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sparsepo.config.typed import spec


@dataclass(frozen=True)
class MaskConfig:
    """Mask options (paper appendix D). ``sharing``: ``independent`` (mu, md from two networks) or ``common``.

    ``init``: ``centred`` (default) calibrates each learned mask on the run's first training batches so a fraction
    ``init_sparsity`` of tokens starts at exactly 0 whatever the seed; ``paper`` is the specification's N(0, 0.02)
    start, whose sparsity the seed decides (METHODS.md "learned mask network", "Initialisation").
    """

    kind: Literal["learned", "binary", "random"] = "learned"  # learned-mask network: ReLU, 0/1 straight-through, U[0,1) ablation
    layers: Literal["all", "last"] = "all"  # hidden states the mask reads: every layer's, or the last one's
    depth: Literal[1, 2] = 1  # per-layer head: Linear(d, 1), or Linear(d, hidden) -> ReLU -> Linear(hidden, 1)
    sharing: Literal["independent", "common"] = "independent"  # two networks (mu, md), or one for both
    weight_decay: float = spec(0.01, ge=0)
    init: Literal["centred", "paper"] = "centred"  # start of learned masks: calibrated on data, or N(0, 0.02)
    init_sparsity: float = spec(0.5, ge=0, le=0.99)  # centred: fraction of response tokens whose mask starts at 0
    lr: float | None = spec(1e-3, gt=0)  # mask networks' own peak learning rate (fresh layers); null = optim.lr
    mapo: Literal["mlp", "attn", "resid", "logits", "all", "uniform"] = "all"  # MaPO: which activations
    hidden: int = spec(200, ge=1)  # width of depth-2 mask layers
