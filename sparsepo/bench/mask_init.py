"""Where learned masks start, per seed: the figures behind METHODS.md "Initialisation of the learned masks".

    sparsepo bench mask_init [--model smollm2] [--seeds 0 1 2 3 4] [--texts 40] [--init paper centred]

Reads the reference's hidden states of ``--texts`` Pang & Lee review openings (one half calibrates the centred
start, the other half is held out), then prints: how large the component shared by every token is after the
LayerNorm, and per seed and start, the spread of the layers' pre-activations (|mean| / std over tokens, the
fraction above 0) and the reward mask's initial sparsity and mean value on the held-out tokens.
"""

from __future__ import annotations

import argparse

import torch


def hidden_tokens(model_name: str, texts: list[str], max_length: int = 48) -> list[torch.Tensor]:
    """Per transformer layer, the hidden states of every non-padding token that predicts a next one, ``(N, d)``."""
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
    ln = torch.nn.functional.layer_norm(tokens, tokens.shape[-1:])
    mean = ln.mean(0)
    return float(mean.norm()), float((ln - mean).norm(dim=-1).mean()), mean.abs().topk(2).indices.tolist()


def start_figures(tokens: list[torch.Tensor], held: list[torch.Tensor], seed: int, init: str) -> dict[str, float]:
    """One seed's mask start: per-layer pre-activation spread and the mask on the held-out tokens."""
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


def main(argv: list[str] | None = None) -> int:
    from sparsepo.assets import load_reviews

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--texts", type=int, default=40, help="review openings (half calibrate, half held out)")
    ap.add_argument("--init", nargs="+", choices=["paper", "centred"], default=["paper", "centred"])
    args = ap.parse_args(argv)
    texts = [r["text"][:300] for r in load_reviews()[: args.texts]]
    half = len(texts) // 2
    cal, held = hidden_tokens(args.model, texts[:half]), hidden_tokens(args.model, texts[half:])
    mid = len(cal) // 6
    norm, dev, top = shared_component(cal[mid])
    print(f"{args.model}: {cal[0].shape[0]} calibration + {held[0].shape[0]} held-out tokens, {len(cal)} layers")
    print(f"layer {mid + 1} after LayerNorm: |mean over tokens| {norm:.1f} vs mean |deviation| {dev:.1f}; "
          f"largest shared features {top}")
    print(f"{'init':8s} {'seed':>4s} {'sparsity_%':>10s} {'mask_mean':>9s} {'max_|mean|/std':>14s} {'above0 min-max':>15s}")
    for init in args.init:
        for seed in args.seeds:
            f = start_figures(cal, held, seed, init)
            print(f"{init:8s} {seed:4d} {f['sparsity_%']:10.1f} {f['mask_mean']:9.4f} {f['max_|mean|/std']:14.2f} "
                  f"{f['above0_min']:7.2f}-{f['above0_max']:.2f}")
    return 0
