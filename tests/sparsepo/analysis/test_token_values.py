"""Token values and heatmaps from a real (tiny) training checkpoint."""

import json

import pytest
import torch

from sparsepo.analysis.heatmap import plot_heatmap, write_heatmap_html
from sparsepo.analysis.token_values import checkpoint_token_values
from sparsepo.config.schema import load_config
from sparsepo.objectives.masks import build_mask_networks, model_dims
from sparsepo.training.checkpoint import save_checkpoint
from sparsepo.training.models import load_causal_lm, load_tokenizer


@pytest.mark.parametrize("method", ["sparsepo", "mapo", "dpo", "sepo", "confpo"])
def test_heatmaps_from_checkpoint(tmp_path, tiny_llama_path, method):
    oracle = [f"model.oracle={tiny_llama_path}"] if method == "sepo" else []
    cfg = load_config(None, [f"method={method}", f"model.name={tiny_llama_path}", "data.path=offline:review-pairs",
                             "data.max_length=64", "data.max_prompt_length=40", *oracle])
    policy, tok = load_causal_lm(tiny_llama_path), load_tokenizer(tiny_llama_path)
    masks = build_mask_networks(cfg.mask, *model_dims(policy)) if method == "sparsepo" else None
    opt = torch.optim.AdamW(policy.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ckpt = save_checkpoint(tmp_path / "ckpt", policy=policy, tokenizer=tok, masks=masks, optimizer=opt, scheduler=sched,
                           step=1, rng_states=[], config=cfg.to_dict())
    maps = checkpoint_token_values(ckpt, n=2)
    assert len(maps) == 2
    rows = maps[0]["chosen"].rows
    if method == "dpo":
        assert set(rows) == {"reward beta*r_t", "token KL k_t"}
    elif method in ("sepo", "confpo"):  # the zoo weighting's weights, 0 or 1; no KL term, so no KL mask
        assert "KL mask" not in rows and set(rows["reward mask"]) <= {0.0, 1.0} and 0 in rows["reward mask"]
        if method == "confpo":
            return  # reference-free: no r_t row
    else:
        assert {"reward mask", "KL mask"} <= set(rows)
        assert min(rows["reward mask"]) >= 0
    # The policy equals its reference here: every r_t and k_t is 0.
    assert max(abs(v) for v in rows["reward beta*r_t"]) < 1e-9
    html = write_heatmap_html(maps[0], tmp_path / "h.html").read_text()
    assert "chosen" in html and "rejected" in html
    png = plot_heatmap(maps[0], tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(rows)  # plain floats
