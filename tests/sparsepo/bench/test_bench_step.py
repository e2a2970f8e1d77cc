"""bench step: the fused-head ratios printed for methods measured both ways."""

from sparsepo.bench.step import print_fused_ratios


def row(method, step_s, first_s, mem):
    return {"method": method, "step_s": step_s, "first_s": first_s, "peak_mem_gib": mem, "tokens_per_s": 1.0}


def test_fused_ratios_pair_each_method_with_its_fused_run(capsys):
    print_fused_ratios([row("dpo", 2.0, 3.0, 4.0), row("dpo+fused", 1.5, 30.0, 3.0), row("simpo", 1.0, 1.0, 1.0)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["fused/eager", "step", "first", "peak"]
    assert lines[1:] == [f"{'dpo':15s} {0.75:8.2f} {10.0:8.2f} {0.75:8.2f}"]


def test_no_ratios_without_a_pair(capsys):
    print_fused_ratios([row("dpo", 2.0, 3.0, 4.0)])
    assert capsys.readouterr().out == ""
