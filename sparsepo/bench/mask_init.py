"""Where learned masks start, per seed: the figures behind METHODS.md "Initialisation of the learned masks".

    sparsepo bench mask_init [--model smollm2] [--seeds 0 1 2 3 4] [--texts 40] [--init paper centred] [--check]

Reads the reference's hidden states of ``--texts`` Pang & Lee review openings (one half calibrates the centred
start, the other half is held out), then prints: how large the component shared by every token is after the
LayerNorm, and per seed and start, the spread of the layers' pre-activations (|mean| / std over tokens, the
fraction above 0) and the reward mask's initial sparsity and mean value on the held-out tokens.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sparsepo.bench.common import ModelConfig, add_config_flags, check_models, config_from_args, preflight
from sparsepo.config.typed import spec

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MaskInitConfig(ModelConfig):
    seeds: tuple[int, ...] = spec((0, 1, 2, 3, 4), ge=0, help="mask-network seeds")
    texts: int = spec(40, ge=2, help="review openings (half calibrate, half held out)")
    init: tuple[Literal["paper", "centred"], ...] = spec(("paper", "centred"), help="mask.init starts to compare")


CONFIG = MaskInitConfig  # this benchmark's settings (read by gpu_check and tests/test_docs.py)


def hidden_tokens(model_name: str, texts: list[str], max_length: int = 48) -> list[torch.Tensor]:
    """Per transformer layer, the hidden states of every non-padding token that predicts a next one, ``(N, d)``."""
    import torch

    from sparsepo.objectives.masks import select_layers
    from sparsepo.training.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(model_name)
    model = load_causal_lm(model_name, dtype="float32").eval()
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    keep = enc["attention_mask"][:, 1:].bool()
    return [h[keep] for h in select_layers(list(out.hidden_states[1:]), "all")]


def shared_component(tokens: torch.Tensor) -> tuple[float, float, list[int]]:
    """After a LayerNorm: (norm of the mean over tokens, mean norm of the deviations from it, top-2 features)."""
    import torch

    ln = torch.nn.functional.layer_norm(tokens, tokens.shape[-1:])
    mean = ln.mean(0)
    return float(mean.norm()), float((ln - mean).norm(dim=-1).mean()), mean.abs().topk(2).indices.tolist()


def start_figures(tokens: list[torch.Tensor], held: list[torch.Tensor], seed: int, init: str) -> dict[str, float]:
    """One seed's mask start: per-layer pre-activation spread and the mask on the held-out tokens."""
    import torch

    from sparsepo.objectives.masks import MaskConfig, build_mask_networks

    torch.manual_seed(seed)
    net = build_mask_networks(MaskConfig(init=init), tokens[0].shape[-1], len(tokens))["reward"]
    if init == "centred":
        net.calibrate(tokens, MaskConfig().init_sparsity)
    with torch.no_grad():
        z = [f(net.norm(h)).squeeze(-1) for f, h in zip(net.per_layer, held, strict=True)]
        mask = net(held)
    ratio = torch.stack([zl.mean().abs() / zl.std() for zl in z])
    above = torch.stack([(zl > 0).float().mean() for zl in z])
    return {"sparsity_%": 100 * float((mask == 0).float().mean()), "mask_mean": float(mask.mean()),
            "max_|mean|/std": float(ratio.max()), "above0_min": float(above.min()), "above0_max": float(above.max())}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="sparsepo bench mask_init")
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    return add_config_flags(ap, MaskInitConfig)


def main(argv: list[str] | None = None) -> int:
    from sparsepo.assets import load_reviews

    args = build_parser().parse_args(argv)
    cfg = config_from_args(MaskInitConfig, args)
    if preflight("mask_init", args, check_models("mask_init", cfg.model)):
        return 0
    texts = [r["text"][:300] for r in load_reviews()[: cfg.texts]]
    half = len(texts) // 2
    cal, held = hidden_tokens(cfg.model, texts[:half]), hidden_tokens(cfg.model, texts[half:])
    mid = len(cal) // 6
    norm, dev, top = shared_component(cal[mid])
    print(f"{cfg.model}: {cal[0].shape[0]} calibration + {held[0].shape[0]} held-out tokens, {len(cal)} layers")
    print(f"layer {mid + 1} after LayerNorm: |mean over tokens| {norm:.1f} vs mean |deviation| {dev:.1f}; "
          f"largest shared features {top}")
    print(f"{'init':8s} {'seed':>4s} {'sparsity_%':>10s} {'mask_mean':>9s} {'max_|mean|/std':>14s} {'above0 min-max':>15s}")
    for init in cfg.init:
        for seed in cfg.seeds:
            f = start_figures(cal, held, seed, init)
            print(f"{init:8s} {seed:4d} {f['sparsity_%']:10.1f} {f['mask_mean']:9.4f} {f['max_|mean|/std']:14.2f} "
                  f"{f['above0_min']:7.2f}-{f['above0_max']:.2f}")
    return 0
