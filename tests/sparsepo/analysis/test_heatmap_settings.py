"""``sparsepo heatmap`` settings: flags from a frozen dataclass, every bad setting refused in one line before a
model loads (the checkpoint's files and --n before torch is imported), and ``--check`` loading no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsepo.analysis.token_values import HeatmapSettings, build_parser
from sparsepo.config.typed import ConfigError
from tests.sparsepo.refusals import refuse

PAIR = '{"prompt": "The film", "chosen": " was wonderful.", "rejected": " was dull."}\n'


@pytest.fixture
def ckpt(tmp_path) -> Path:
    """The layout of a training checkpoint (config.yaml, policy/): enough for every check before the models."""
    folder = tmp_path / "checkpoint_000001"
    (folder / "policy").mkdir(parents=True)
    (folder / "config.yaml").write_text("method: dpo\nmodel: {name: tiny-llama}\ndata: {path: 'offline:review-pairs'}\n")
    return folder


@pytest.fixture
def pairs(tmp_path) -> Path:
    (tmp_path / "pairs.jsonl").write_text(PAIR * 2)
    return tmp_path / "pairs.jsonl"


def test_missing_checkpoint_flag():
    got = refuse("heatmap")
    assert (got.code, got.error, got.heavy) == (2, "sparsepo heatmap: error: the following arguments are required: "
                                                   "--checkpoint", [])  # fmt: skip


def test_checkpoint_folder_missing(tmp_path):
    got = refuse("heatmap", "--checkpoint", str(tmp_path / "nope"))
    assert (got.code, got.error, got.heavy) == (2, f"sparsepo: error: --checkpoint: no such folder: {tmp_path / 'nope'}", [])


@pytest.mark.parametrize("remove", ["config.yaml", "policy"])
def test_checkpoint_without_config_or_policy(ckpt, remove):
    (ckpt / remove).rmdir() if remove == "policy" else (ckpt / remove).unlink()
    got = refuse("heatmap", "--checkpoint", str(ckpt))
    shown = "policy/" if remove == "policy" else remove
    assert (got.code, got.error, got.heavy) == (2, f"sparsepo: error: --checkpoint {ckpt}: not a training checkpoint "
                                                   f"(no {shown})", [])  # fmt: skip


@pytest.mark.parametrize("flag", ["--n", "-n"])
def test_n_below_one(ckpt, flag):
    got = refuse("heatmap", "--checkpoint", str(ckpt), flag, "0")
    assert (got.code, got.error, got.heavy) == (2, "sparsepo: error: flags: n: must be >= 1, got 0", [])


def test_pairs_file_missing(ckpt, tmp_path):
    got = refuse("heatmap", "--checkpoint", str(ckpt), "--pairs", str(tmp_path / "nope.jsonl"))
    assert (got.code, got.error, got.heavy) == (2, f"sparsepo: error: --pairs: file not found: {tmp_path / 'nope.jsonl'}", [])


# Checks that read the checkpoint's config or the pairs (the data module loads torch), before any model.
def test_pairs_row_without_a_field(ckpt, pairs):
    pairs.write_text(PAIR + '{"prompt": "The film", "chosen": " was fine."}\n')
    got = refuse("heatmap", "--checkpoint", str(ckpt), "--pairs", str(pairs))
    assert got.code == 2 and got.error == (f"sparsepo: error: {pairs}: row 2, field 'rejected': missing; the row has "
                                           "columns ['prompt', 'chosen']")  # fmt: skip
    assert "transformers" not in got.heavy and "ray" not in got.heavy


def test_only_the_first_n_pairs_are_checked(ckpt, pairs):
    pairs.write_text(PAIR + '{"prompt": "The film"}\n')
    got = refuse("heatmap", "--checkpoint", str(ckpt), "--pairs", str(pairs), "-n", "1", "--check")
    assert got.code == 0 and "transformers" not in got.heavy


def test_pairs_file_without_rows(ckpt, pairs):
    pairs.write_text("")
    got = refuse("heatmap", "--checkpoint", str(ckpt), "--pairs", str(pairs))
    assert got.code == 2 and got.error.startswith(f"sparsepo: error: {pairs}") and "no preference pairs" in got.error
    assert "transformers" not in got.heavy


def test_checkpoint_config_with_an_unknown_key(ckpt):
    (ckpt / "config.yaml").write_text("method: dpo\noptim: {lrr: 1.0e-5}\n")
    got = refuse("heatmap", "--checkpoint", str(ckpt))
    assert got.code == 2 and got.error.startswith(f"sparsepo: error: {ckpt / 'config.yaml'}: optim.lrr: unknown key")
    assert "transformers" not in got.heavy and "ray" not in got.heavy


def test_check_passes_without_loading_a_model(ckpt, pairs):
    got = refuse("heatmap", "--checkpoint", str(ckpt), "--pairs", str(pairs), "--check")
    assert got.code == 0 and "transformers" not in got.heavy and not (ckpt / "heatmaps").exists()


def test_settings_are_frozen_and_checked_in_python(ckpt):
    s = HeatmapSettings(checkpoint=str(ckpt))
    assert (s.n, s.pairs, s.out, s.check) == (3, None, None, False)
    with pytest.raises(AttributeError):
        s.n = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match="no such folder"):
        HeatmapSettings(checkpoint=str(ckpt / "nope"))


def test_help_shows_required_checkpoint_and_the_short_n():
    text = " ".join(build_parser().format_help().split())
    assert "--checkpoint CHECKPOINT" in text and "[str; required]" in text
    assert "--n N, -n N number of pairs (the first n) [int; default: 3]" in text
