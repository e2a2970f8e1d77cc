"""tune/heatmap.py on a real tiny checkpoint: heatmaps land beside the checkpoint, not in the current folder."""

from pathlib import Path

import torch

from sparsepo.config.schema import load_config
from sparsepo.training.checkpoint import save_checkpoint
from sparsepo.training.models import load_causal_lm, load_tokenizer

SCRIPT = Path(__file__).resolve().parents[3] / "tune" / "heatmap.py"


def heatmap_main():
    """What ``python tune/heatmap.py ARGS`` runs."""
    from sparsepo.cli import main

    assert 'main(["heatmap", *sys.argv[1:]])' in SCRIPT.read_text()
    return lambda argv: main(["heatmap", *argv])


def test_heatmaps_default_to_the_checkpoint_folder(tmp_path, tiny_llama_path, monkeypatch):
    cfg = load_config(None, ["method=dpo", f"model.name={tiny_llama_path}", "data.path=offline:review-pairs",
                             "data.max_length=64", "data.max_prompt_length=40"])
    policy, tok = load_causal_lm(tiny_llama_path), load_tokenizer(tiny_llama_path)
    opt = torch.optim.AdamW(policy.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ckpt = save_checkpoint(tmp_path / "trial" / "checkpoint_000001", policy=policy, tokenizer=tok, masks=None,
                           optimizer=opt, scheduler=sched, step=1, rng_states=[], config=cfg.to_dict())
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main = heatmap_main()
    assert main(["--checkpoint", str(ckpt), "-n", "1"]) == 0
    assert sorted(p.name for p in (Path(ckpt) / "heatmaps").iterdir()) == ["pair0.html", "pair0.png"]
    assert not any(elsewhere.iterdir())
    assert main(["--checkpoint", str(ckpt), "-n", "1", "--out", "mine"]) == 0  # --out still wins
    assert (elsewhere / "mine" / "pair0.png").exists()
