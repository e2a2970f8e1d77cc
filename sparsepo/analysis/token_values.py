"""Per-token values of a trained checkpoint on preference pairs: beta * r_t, token KL k_t and the masks.

Reads a training checkpoint (``sparsepo.training.checkpoint`` layout): the policy folder, the config it was trained
with, and the mask networks (learned masks), the reference's activations (MaPO) or the zoo weighting's inputs
(the oracle model). One forward pass, no
gradient, the same code as training, so the values are exactly those the objective saw.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsepo.config.flags import add_dataclass_flags, dataclass_from_args
from sparsepo.config.typed import ConfigError, spec

# torch, transformers and matplotlib load inside the functions: `sparsepo heatmap --help` must not wait for them.
if TYPE_CHECKING:
    import torch

    from sparsepo.analysis.heatmap import TokenHeatmap
    from sparsepo.objectives.losses import TokenStats


def checkpoint_token_values(
    checkpoint: str | Path, rows: list[dict[str, Any]] | None = None, n: int = 3
) -> list[dict[str, TokenHeatmap]]:
    """For ``n`` pairs (default: the first of the checkpoint's training data), ``{"chosen": map, "rejected": map}``.

    Each map's rows: ``reward beta*r_t`` and ``token KL k_t`` (nats), and for masked methods ``reward mask`` and
    ``KL mask``; tokens are the response tokens, decoded one by one.
    """
    import torch

    with torch.no_grad():
        return _token_values(Path(checkpoint), rows, n)


def _token_values(ckpt: Path, rows: list[dict[str, Any]] | None, n: int) -> list[dict[str, TokenHeatmap]]:
    import torch
    import yaml

    from sparsepo.config.schema import from_dict
    from sparsepo.data.preference import DataConfig, PreferenceCollator, load_preference_data, read_rows
    from sparsepo.training.checkpoint import MASKS_FILE, POLICY_DIR, policy_folder
    from sparsepo.training.models import load_causal_lm, load_tokenizer
    from sparsepo.training.preference_model import PreferenceModel, Reference

    cfg = from_dict(yaml.safe_load((ckpt / "config.yaml").read_text()), where=str(ckpt / "config.yaml"))
    tok = load_tokenizer(str(ckpt / POLICY_DIR))
    rows = (rows if rows is not None else read_rows(cfg.data.path, cfg.data.split))[:n]
    ds, _ = load_preference_data(DataConfig(**{**vars(cfg.data), "path": cfg.data.path, "limit": None}), tok, rows=rows)
    batch = PreferenceCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    policy = load_causal_lm(str(ckpt / POLICY_DIR), dtype="float32")
    ref = load_causal_lm(cfg.model.ref or cfg.model.name, dtype="float32")
    model = PreferenceModel(policy, cfg.method, cfg.loss_hparams(), cfg.mask, chunk_size=cfg.run.chunk_size,
                            log_kl=True).eval()  # heatmaps show k_t for every method
    if model.masks is not None:
        model.masks.load_state_dict(torch.load(ckpt / MASKS_FILE, map_location="cpu"))
    oracle = load_causal_lm(policy_folder(cfg.model.oracle), dtype="float32") if model.spec.needs_oracle else None
    reference = Reference(ref, cfg.method, cfg.mask, oracle=oracle) if model.spec.needs_reference else None
    out = model(batch, reference(batch) if reference is not None else None)
    beta = cfg.loss_hparams()["beta"]
    # Column t of the per-token stats belongs to token t+1 of its batch row; rejected rows follow the chosen ones.
    labels = batch["input_ids"][:, 1:]
    b = len(ds)
    return [
        {"chosen": _heatmap(out.chosen, i, labels[i], beta, tok, model.spec.needs_kl),
         "rejected": _heatmap(out.rejected, i, labels[b + i], beta, tok, model.spec.needs_kl)}
        for i in range(b)
    ]


def _heatmap(s: TokenStats, i: int, labels: torch.Tensor, beta: float, tok: Any, kl_term: bool) -> TokenHeatmap:
    """One side's map; ``kl_term``: the objective weighs the token KL (so its mask gets a row)."""
    from sparsepo.analysis.heatmap import TokenHeatmap

    keep = s.mask[i] > 0
    ids = labels[keep].tolist()
    rows: dict[str, Any] = {}
    if s.ref_logps is not None:
        rows["reward beta*r_t"] = beta * s.log_ratio[i][keep]
    if s.kl is not None:
        rows["token KL k_t"] = s.kl[i][keep]
    if s.reward_mask is not None:
        rows["reward mask"] = s.reward_mask[i][keep]  # a zoo weighting's weights too
        if kl_term:
            rows["KL mask"] = (s.kl_mask if s.kl_mask is not None else s.reward_mask)[i][keep]
    if not rows:
        rows["log pi(y_t)"] = s.logps[i][keep]
    return TokenHeatmap([tok.decode([t]) for t in ids], rows)


# ------------------------------------------------------------------------------ the `heatmap` command
@dataclasses.dataclass(frozen=True)
class HeatmapSettings:
    """The ``heatmap`` command's settings, one flag each; the checkpoint's files are checked here, before the
    config is read or any model loads."""

    checkpoint: str  # a training checkpoint folder (holds policy/ and config.yaml)
    pairs: str | None = None  # preference pairs file (default: the checkpoint's training data)
    n: int = spec(3, ge=1, help="number of pairs (the first n)")
    out: str | None = None  # output folder (default: <checkpoint>/heatmaps/)
    check: bool = False  # validate the checkpoint and the pairs; load no model, write nothing

    def __post_init__(self) -> None:
        ckpt = Path(self.checkpoint)
        if not ckpt.is_dir():
            raise ConfigError(f"--checkpoint: no such folder: {ckpt}")
        # the names of sparsepo.training.checkpoint (POLICY_DIR, config.yaml); importing it would load torch
        missing = [name for name in ("config.yaml", "policy/") if not (ckpt / name).exists()]
        if missing:
            raise ConfigError(f"--checkpoint {ckpt}: not a training checkpoint (no {' or '.join(missing)})")
        if self.pairs is not None and not Path(self.pairs).is_file():
            raise ConfigError(f"--pairs: file not found: {self.pairs}")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``sparsepo heatmap``: token heatmaps of a trained checkpoint, by default into ``<checkpoint>/heatmaps/``."""
    ap = parser or argparse.ArgumentParser(prog="sparsepo heatmap")
    ap.description = "Token heatmaps of a trained checkpoint (paper Figure 4): beta * r_t, token KL and masks."
    add_dataclass_flags(ap, HeatmapSettings, aliases={"n": ("-n",)})
    return ap


def check(settings: HeatmapSettings) -> list[dict[str, Any]] | None:
    """The checkpoint's config is a valid TrainConfig and the first ``n`` rows of ``--pairs`` (if given) are
    preference pairs; returns those rows. Loads no model (torch, for the config and data modules, only)."""
    import yaml

    from sparsepo.config.schema import from_dict
    from sparsepo.data.preference import PreferenceDataError, check_row, read_rows

    config = Path(settings.checkpoint) / "config.yaml"
    from_dict(yaml.safe_load(config.read_text()), where=str(config))
    if settings.pairs is None:
        return None
    rows = read_rows(settings.pairs)[: settings.n]
    if not rows:
        raise PreferenceDataError(settings.pairs, None, "<file>", "no preference pairs in the file")
    for i, row in enumerate(rows, start=1):
        check_row(row, settings.pairs, i)
    return rows


def run(args: argparse.Namespace) -> int:
    """The ``heatmap`` command: ``pair<i>.html`` (hover for values) and ``pair<i>.png`` per pair."""
    settings = dataclass_from_args(HeatmapSettings, args)
    rows = check(settings)
    if settings.check:
        print(f"[sparsepo] check passed: checkpoint {settings.checkpoint} and its pairs are valid", flush=True)
        return 0
    from sparsepo.analysis.heatmap import checkpoint_heatmap_dir, write_heatmaps

    maps = checkpoint_token_values(settings.checkpoint, rows, settings.n)
    out = Path(settings.out) if settings.out else checkpoint_heatmap_dir(settings.checkpoint)
    write_heatmaps(maps, out)
    print(f"wrote {len(maps)} heatmaps (HTML + PNG) to {out}")
    return 0
