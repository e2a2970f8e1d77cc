"""The dialogue experiment's pieces that need no training: HH text format, the paper preset, the report layout."""

from __future__ import annotations

import pandas as pd
import pytest

from sparsepo.experiments.dialogue.experiment import (
    PAPER_METHODS,
    DialogueConfig,
    hh_text,
    leaderboard_spec,
    paper_config,
    stage_data,
    write_report,
)
from sparsepo.experiments.dialogue.offline import review_dialogues
from sparsepo.experiments.dialogue.transcripts import hh_row_to_pair


def test_hh_text_rebuilds_the_transcript_up_to_the_compared_turn():
    row = next(r for r in review_dialogues(10) if r["chosen"].count("\n\nHuman:") == 2)
    text = hh_text(hh_row_to_pair(row))
    assert text["prompt"] + text["chosen"] == row["chosen"]  # HH text is exactly prompt + " " + reply
    assert text["prompt"] + text["rejected"] == row["rejected"]
    assert text["prompt"].endswith("\n\nAssistant:") and text["chosen"].startswith(" ")


def test_offline_data_stage_parses_the_written_hh_file(tmp_path):
    cfg = DialogueConfig(storage_path=str(tmp_path), sft_examples=6, train_pairs=4)
    pairs = stage_data(cfg, log=lambda _: None)
    assert pairs == [hh_row_to_pair(r) for r in review_dialogues(6)]
    assert len(list((tmp_path / "data").glob("dialogue-hh-*.jsonl"))) == 1
    assert stage_data(DialogueConfig(**{**cfg.__dict__, "prompt_format": "hh"}), log=lambda _: None)[0] == hh_text(pairs[0])
    with pytest.raises(ValueError, match="prompt_format must be 'chat' or 'hh'"):
        stage_data(DialogueConfig(**{**cfg.__dict__, "prompt_format": "xml"}), log=lambda _: None)


def test_paper_preset_is_hh_on_pythia_with_the_leaderboard_and_every_method():
    cfg = paper_config(DialogueConfig(storage_path="s3://b/runs", name="mine"))
    assert (cfg.model, cfg.data, cfg.prompt_format) == ("EleutherAI/pythia-1.4b", "Anthropic/hh-rlhf", "hh")
    assert cfg.methods == PAPER_METHODS and cfg.sft_steps is None and cfg.steps is None  # one epoch each
    assert (cfg.storage_path, cfg.name) == ("s3://b/runs", "mine")
    spec = leaderboard_spec(cfg)
    assert spec.suite == "open_llm_v2" and spec.include_path is None and spec.backend == "vllm"
    assert len(spec.tasks) == 6 and not spec.chat_template and spec.batch_size == "auto"
    mini = leaderboard_spec(DialogueConfig())
    assert mini.include_path.endswith("lm_eval_tasks") and mini.chat_template and mini.batch_size == 8 and mini.limit == 4


def toy_results(mc: float, gen: float, inst: float, prompt: float) -> dict:
    """lm-eval-shaped results of the local toy suite, 4 documents per task with logged per-document metrics
    that give the raw scores: MC subtasks with 2 and 4 choices at raw accuracy ``mc``; IFEval's instruction level
    over 5 instructions (``inst`` in fifths)."""
    def flags(raw: float, n: int = 4) -> list[float]:
        return [1.0] * round(raw * n) + [0.0] * (n - round(raw * n))

    def samples(k: int, metric: str, values: list) -> list[dict]:
        return [{"doc_id": d, "filter": "none", "arguments": [None] * k, metric: v} for d, v in enumerate(values)]

    inst_flags = flags(inst, 5)
    inst_docs = [inst_flags[0:1], inst_flags[1:2], inst_flags[2:4], inst_flags[4:5]]
    mc_cfg, gen_cfg = {"output_type": "multiple_choice"}, {"output_type": "generate_until"}
    ifeval = [{"doc_id": d, "filter": "none", "inst_level_strict_acc": i, "prompt_level_strict_acc": p}
              for d, (i, p) in enumerate(zip(inst_docs, flags(prompt), strict=True))]
    return {
        "group_subtasks": {"sparsepo_toy_mc": ["sparsepo_toy_mc_binary", "sparsepo_toy_mc_four"]},
        "results": {"sparsepo_toy_mc": {"acc_norm,none": mc}, "sparsepo_toy_mc_binary": {"acc_norm,none": mc},
                    "sparsepo_toy_mc_four": {"acc_norm,none": mc}, "sparsepo_toy_gen": {"exact_match,none": gen},
                    "sparsepo_toy_ifeval": {"inst_level_strict_acc,none": inst, "prompt_level_strict_acc,none": prompt}},
        "configs": {"sparsepo_toy_mc_binary": mc_cfg, "sparsepo_toy_mc_four": mc_cfg, "sparsepo_toy_gen": gen_cfg,
                    "sparsepo_toy_ifeval": gen_cfg},
        "samples": {"sparsepo_toy_mc_binary": samples(2, "acc_norm", flags(mc)),
                    "sparsepo_toy_mc_four": samples(4, "acc_norm", flags(mc)),
                    "sparsepo_toy_gen": samples(0, "exact_match", flags(gen)), "sparsepo_toy_ifeval": ifeval},
    }


def test_report_is_table1_with_the_sft_row_first(tmp_path):
    results = {"SFT": toy_results(0.75, 0.5, 0.4, 0.25), "dpo": toy_results(0.5, 0.0, 0.2, 0.0),
               "sparsepo": toy_results(1.0, 1.0, 1.0, 1.0)}
    files = write_report(DialogueConfig(), results, "/sft/policy", 32, tmp_path, 12.0)
    table = pd.read_csv(files["table"], index_col="Method")
    assert table.index.tolist() == ["SFT", "dpo", "sparsepo"]
    columns = ["MC", "Gen", "IFEval Inst.", "IFEval Prompt", "Average"]
    assert table.columns.tolist() == columns + [f"{c} CI {end}" for c in columns for end in ("low", "high")]
    # MC: per-subtask normalisation, (0.75 - 1/2) / (1/2) = 50 and (0.75 - 1/4) / (3/4) = 66.7, averaged
    assert table.loc["SFT", "MC"] == pytest.approx((50 + 200 / 3) / 2)
    assert table.loc["SFT"].tolist()[1:4] == pytest.approx([50.0, 40.0, 25.0])
    assert table.loc["dpo", "MC"] == pytest.approx((0 + 100 / 3) / 2)  # binary at chance, four-way above it
    assert table.loc["sparsepo", "Average"] == pytest.approx(100.0)
    # every document right: nothing to resample, a zero-width interval; otherwise it holds the score
    assert (table.loc["sparsepo", "Gen CI low"], table.loc["sparsepo", "Gen CI high"]) == (100.0, 100.0)
    for c in columns:
        assert (table[f"{c} CI low"] <= table[c] + 1e-9).all() and (table[c] <= table[f"{c} CI high"] + 1e-9).all()
    report = files["report"].read_text()
    assert "| Method | MC | Gen | IFEval Inst. | IFEval Prompt | Average |" in report
    sft = next(line for line in report.splitlines() if line.startswith("| SFT |"))
    assert [cell.split(" [")[0] for cell in sft.strip("| ").split(" | ")][1:] == ["58.33", "50.00", "40.00", "25.00", "43.33"]
    assert "| sparsepo | 100.00 [100.00, 100.00] |" in report
    assert "SFT model `/sft/policy` (first row); PO on 32 pairs of `offline`" in report


def test_paper_data_comes_from_the_hub_by_name_mocked_hub(monkeypatch, tmp_path):
    """--paper reads Anthropic/hh-rlhf through datasets.load_dataset(name, split=...) (mocked: no hub here) and
    parses its transcripts like a local file, a malformed one naming the hub row."""
    import datasets

    rows = review_dialogues(6)
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = paper_config(DialogueConfig(storage_path=str(tmp_path)))
    pairs = stage_data(cfg, log=lambda _: None)
    assert calls and all(c == ("Anthropic/hh-rlhf", "train") for c in calls)
    assert pairs == [hh_text(hh_row_to_pair(r)) for r in rows]  # the preset's HH text prompts
    rows[2] = {**rows[2], "chosen": rows[2]["chosen"].replace("\n\nAssistant:", "\n\nHuman:", 1)}
    with pytest.raises(ValueError, match="Anthropic/hh-rlhf: row 3, field 'chosen'"):
        stage_data(cfg, log=lambda _: None)
