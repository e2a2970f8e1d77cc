"""bench vs_trl: its workloads, TRL's two settings, the table's ratios and FLOP utilisation, and one real run."""

import json

import pytest

from sparsepo.bench.vs_trl import VsTrlConfig, main, our_system, system_names, table, trl_config
from sparsepo.bench.workloads import realistic_pairs, tokens_per_pair, write_workload


def test_the_realistic_workload_has_distinct_prompts_and_responses_of_64_to_256_tokens():
    from sparsepo.training.models import load_tokenizer

    tok = load_tokenizer("smollm2")
    rows = realistic_pairs(40)
    assert len({r["prompt"][0]["content"] for r in rows}) == 40
    lengths = [len(tok(r[s][0]["content"])["input_ids"]) for r in rows for s in ("chosen", "rejected")]
    assert min(lengths) >= 40 and max(lengths) <= 300 and max(lengths) - min(lengths) > 100  # varying lengths
    assert all(r["chosen"][0]["role"] == "assistant" and r["chosen"] != r["rejected"] for r in rows)


def test_tokens_per_pair_counts_both_sequences_cut_to_max_length(tmp_path):
    from sparsepo.training.models import load_tokenizer

    tok = load_tokenizer("smollm2")
    path = tmp_path / "pairs.jsonl"
    write_workload(path, "realistic", 6)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for cut in (10_000, 200):
        want = sum(min(len(tok(tok.apply_chat_template(r["prompt"] + r[s], tokenize=False),
                               add_special_tokens=False)["input_ids"]), cut) for r in rows for s in ("chosen", "rejected"))
        assert tokens_per_pair(path, "smollm2", cut) == pytest.approx(want / 6)
    assert tokens_per_pair(path, "smollm2", 200) < tokens_per_pair(path, "smollm2", 10_000)


def test_trl_at_its_best_turns_off_checkpointing_and_emulated_bf16_and_keeps_fused_adamw(tmp_path):
    from sparsepo.training.hardware import cpu_has_native_bf16

    default = trl_config("default", [], output_dir=str(tmp_path))
    best = trl_config("best", ["padding_free=true"], output_dir=str(tmp_path))
    assert default.gradient_checkpointing and default.bf16  # TRL as shipped: bf16 on any CPU
    assert not best.gradient_checkpointing and best.bf16 == cpu_has_native_bf16() and best.padding_free
    assert best.optim.value == default.optim.value == "adamw_torch_fused"


def row(step_s, rss, precision="fp32", **kw):
    return {"step_s": step_s, "startup_s": 10.0, "peak_rss_gib": rss, "threads": 2, "precision": precision,
            "optimizer": "adamw_fused", "grad_ckpt": False, **kw}


def test_ratios_are_against_the_faster_trl_and_utilisation_uses_the_system_precision_peak():
    args = VsTrlConfig(model="m", batch_size=4, steps=12, repeats=2)  # short workload: max_length 128
    rows = {"trl-default": [row(9.0, 3.0, "bf16"), row(11.0, 3.0, "bf16")], "trl-best": [row(4.0, 2.0), row(6.0, 2.0)],
            "dpo": [row(4.0, 1.0), row(4.0, 1.0)], "sparsepo": [row(4.4, 1.1), row(4.4, 1.1)]}
    peaks = {"peak_gflops": {"fp32": 100.0, "bf16": 400.0}, "matmul_params": 1e8, "threads": 2}
    lines = {ln.split()[0]: ln.split() for ln in table(rows, peaks, 150.0, args).splitlines()[4:]}
    flops = 4 * 150.0 * 8 * 1e8  # per step: pairs x tokens x (6N + 2N)
    assert lines["trl-best"][5] == "5.00" and lines["trl-best"][10] == "1.00"  # median of rounds; the faster TRL
    assert lines["dpo"][10] == "0.80" and lines["sparsepo"][12] == "1.10" and lines["sparsepo"][13] == "1.10"
    assert lines["dpo"][7] == f"{flops / 4.0 / 100e9:.0%}" and lines["trl-default"][7] == f"{flops / 10.0 / 400e9:.0%}"
    assert lines["dpo"][6] == f"{4 * 150 / 4.0:.0f}"


@pytest.mark.slow
def test_one_round_of_trl_at_its_best_and_ours_on_the_realistic_workload(capsys):
    assert main(["--model", "tiny-llama", "--steps", "3", "--systems", "trl-best", "dpo", "dpo-local", "--workload",
                 "realistic", "--max-length", "1024", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln.split() for ln in out[4:]}
    assert set(rows) == {"trl-best", "dpo", "dpo-local"} and out[0].startswith("cpu: ") and "flags" in out[0]
    assert rows["trl-best"][4] == "off" and rows["trl-best"][10] == "1.00" and float(rows["dpo"][5]) > 0
    assert float(rows["dpo-local"][5]) > 0 and float(rows["dpo-local"][8]) > 0  # s/step, start-up beside TRL's


def test_a_local_system_is_our_method_in_ray_train_local_mode():
    assert our_system("dpo") == ("dpo", []) and our_system("sparsepo-local") == ("sparsepo", ["run.num_workers=0"])
    assert {"dpo-local", "sparsepo-local", "dpo"} <= set(system_names()) and "trl-best-local" not in system_names()


@pytest.mark.slow
def test_the_gpu_check_dry_run_prints_every_part_on_the_cpu(capsys):
    from sparsepo.bench.gpu_check import main as gpu_check

    # the 540 s budget is the GPU machine's; on a slow or busy CPU the dry run must not fail for want of time
    assert gpu_check(["--dry-run", "--backends", "hf", "--budget-s", "3600"]) == 0
    out = capsys.readouterr().out
    for title in ("shared-prompt packing", "padded (no packing)", "fused LM head", "generation: hf", "FSDP with 1 GPU"):
        assert title in out
    assert out.count("sparsepo ") >= 3 and "sparsepo+fused" in out and "0 part(s) failed" in out
