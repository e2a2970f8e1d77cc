"""bench profile_step: the top-operator lists of two profiled steps, side by side."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from sparsepo.bench.profile_step import main, side_by_side, top_ops


def profiled(fn):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof


def test_top_ops_rank_by_self_time_and_the_table_pads_the_shorter_list():
    a = torch.randn(256, 256)
    heavy = profiled(lambda: [a @ a for _ in range(20)] + [a + 1])
    ops = top_ops(heavy, torch.device("cpu"), 5)
    assert ops[0][0] == "aten::mm" and ops[0][2] == 20
    assert [ms for _, ms, _ in ops] == sorted((ms for _, ms, _ in ops), reverse=True)
    light = top_ops(profiled(lambda: a + 1), torch.device("cpu"), 5)
    table = side_by_side(ops, light, ("ours (dpo)", "TRL DPOTrainer"))
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["#", "ours"] and "TRL DPOTrainer" in lines[0]
    assert len(lines) == 2 + max(len(ops), len(light)) + 2
    assert lines[2].split()[1] == "aten::mm" and lines[2].split()[3] == "20"
    assert lines[-2].startswith(f"ours (dpo): top {len(ops)} total")


@pytest.mark.slow
def test_profiles_ours_and_trl_on_the_same_pairs(capsys):
    """Both systems, one profiled step each, on a tiny model (minutes on a loaded 2-core machine)."""
    assert main(["--system", "both", "--model", "tiny-llama", "--batch-size", "2", "--max-length", "96", "--rows", "5",
                 "--fused-head", "false"]) == 0
    out = capsys.readouterr().out
    assert "ours dpo: one step" in out and "TRL DPOTrainer: one step" in out and "gradient checkpointing False" in out  # TRL at its best
    assert "aten::mm" in out and "TRL DPOTrainer: top 5 total" in out
