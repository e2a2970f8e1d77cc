"""bench step: the ratios printed for methods measured both ways, and its synthetic pair batches."""

from sparsepo.bench.step import StepConfig, print_ratios, synthetic_pairs
from sparsepo.training.packing import pair_spans


def row(method, step_s, first_s, mem):
    return {"method": method, "step_s": step_s, "first_s": first_s, "peak_mem_gib": mem, "tokens_per_s": 1.0}


def test_fused_ratios_pair_each_method_with_its_fused_run(capsys):
    print_ratios([row("dpo", 2.0, 3.0, 4.0), row("dpo+fused", 1.5, 30.0, 3.0), row("simpo", 1.0, 1.0, 1.0)],
                 "+fused", "fused/eager")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["fused/eager", "step", "first", "peak"]
    assert lines[1:] == [f"{'dpo':15s} {0.75:8.2f} {10.0:8.2f} {0.75:8.2f}"]


def test_packing_ratios_compare_multi_pair_rows_with_one_pair_rows(capsys):
    print_ratios([row("dpo", 1.0, 3.0, 2.0), row("dpo+1row", 2.0, 3.0, 4.0)], "+1row", "1row/multi")
    assert capsys.readouterr().out.strip().splitlines()[1] == f"{'dpo':15s} {2.0:8.2f} {1.0:8.2f} {2.0:8.2f}"


def test_no_ratios_without_a_pair(capsys):
    print_ratios([row("dpo", 2.0, 3.0, 4.0)], "+fused", "fused/eager")
    assert capsys.readouterr().out == ""


def test_synthetic_pairs_are_pairs_cut_to_max_length():
    fixed = synthetic_pairs(StepConfig(batch_size=3, max_length=16), vocab=50)
    assert fixed["input_ids"].shape == (6, 16) and pair_spans(fixed) == [(4, 12, 12)] * 3
    ragged = synthetic_pairs(StepConfig(batch_size=8, max_length=20, ragged=(4, 16)), vocab=50)
    spans = pair_spans(ragged)
    assert len(spans) == 8 and len({sum(s) for s in spans}) > 1  # rows differ in length: padding to pack away
    assert all(4 <= p <= 16 and 1 <= c and p + c <= 20 and p + r <= 20 for p, c, r in spans)
