"""CPU cores per worker: driver-side defaults, sweep splits, and the threads a real Ray Train worker uses."""

import os

import pytest
import torch

from sparsepo.config.schema import load_config
from sparsepo.training.hardware import default_cpus_per_worker, split_cpus, threads_for


def test_default_grants_all_cpus_split_between_workers_within_a_node():
    assert default_cpus_per_worker(1, total=2, largest_node=2) == 2
    assert default_cpus_per_worker(3, total=2, largest_node=2) == 0.66  # 3 x 0.66 <= 2: Ray can place them
    assert default_cpus_per_worker(2, total=16, largest_node=4) == 4  # one worker never spans nodes


def test_sweep_split_leaves_room_for_every_trial_driver():
    per_worker = split_cpus(total=2, concurrent=2, num_workers=1, driver_cpus=0.01)
    assert per_worker == 0.99 and 2 * (per_worker + 0.01) <= 2
    assert split_cpus(total=8, concurrent=2, num_workers=3, driver_cpus=1.0) == 1.0
    assert split_cpus(total=2, concurrent=1, num_workers=1, driver_cpus=0.01) == 1.99


@pytest.mark.parametrize("cpus, threads", [(0.5, 1), (0.99, 1), (1.0, 1), (1.99, 2), (2.0, 2), (2.5, 2)])
def test_threads_are_whole_granted_cores(cpus, threads):
    assert threads_for(cpus) == threads


def test_explicit_cpus_per_worker_is_kept_and_unset_is_resolved():
    from sparsepo.training.train import resolve_cpus_per_worker

    assert load_config(None).run.cpus_per_worker is None
    assert resolve_cpus_per_worker(load_config(None, ["run.cpus_per_worker=1.5"])) == 1.5
    assert resolve_cpus_per_worker(load_config(None, ["run.num_workers=1"])) == len(os.sched_getaffinity(0))


class ThreadProbe:
    """An evaluator (runs inside the rank-0 Train worker) reporting the worker's torch threads and niceness."""

    def __call__(self, policy, ref, tokenizer, step):  # noqa: ANN001, ANN204
        return {"probe/threads": float(torch.get_num_threads()), "probe/nice": float(os.getpriority(os.PRIO_PROCESS, 0))}


@pytest.mark.slow
def test_worker_uses_as_many_threads_as_granted_cpus(tmp_path):
    import ray

    from sparsepo.training.train import make_trainer

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        common = [
            "method=dpo", "model.name=tiny-llama", "data.path=offline:review-pairs", "data.limit=8",
            "data.max_length=48", "data.max_prompt_length=32", "optim.batch_size=2", "optim.max_steps=1",
            f"run.storage_path={tmp_path}", "run.eval_every=1", "run.evaluator=tests.sparsepo.training.test_hardware:ThreadProbe",
        ]
        seen = {}
        for name, extra in (("all", []), ("one", ["run.cpus_per_worker=1"])):
            result = make_trainer(load_config(None, common + [f"run.name={name}", *extra])).fit()
            seen[name] = result.return_value[-1]
    finally:
        ray.shutdown()
    assert seen["all"]["probe/threads"] == 2  # default: a single worker gets the whole (2-CPU) cluster
    assert seen["one"]["probe/threads"] == 1
    assert seen["all"]["probe/nice"] == 0  # Ray's worker niceness undone (tests run as root)


def test_bf16_autocast_only_where_it_is_native():
    from sparsepo.training.hardware import cpu_has_native_bf16, mixed_precision

    assert mixed_precision(torch.device("cpu"), bf16=False) is None
    ctx = mixed_precision(torch.device("cpu"), bf16=True)
    assert (ctx is not None) == cpu_has_native_bf16()
    if ctx is not None:
        with ctx:
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_step_under_cpu_autocast_keeps_fp32_token_stats_close_to_fp32():
    """The LM head and token KL stay fp32 under bf16 autocast; only the decoder runs in bf16."""
    import transformers as T

    from sparsepo.training.preference_model import PreferenceModel, Reference

    torch.manual_seed(0)
    cfg = T.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=97)
    policy, ref = T.AutoModelForCausalLM.from_config(cfg), T.AutoModelForCausalLM.from_config(cfg)
    ids = torch.randint(0, 97, (4, 12), generator=torch.Generator().manual_seed(0))
    loss_mask = torch.zeros_like(ids)
    loss_mask[:, 5:] = 1
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "loss_mask": loss_mask}
    model = PreferenceModel(policy, "tdpo1")
    want = model(batch, Reference(ref, "tdpo1")(batch))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(batch, Reference(ref, "tdpo1")(batch))
    assert got.chosen.logps.dtype == got.chosen.kl.dtype == torch.float32
    torch.testing.assert_close(got.chosen.logps, want.chosen.logps, rtol=0.05, atol=0.05)
    torch.testing.assert_close(got.loss, want.loss, rtol=0.05, atol=0.01)


def test_a_process_capped_to_avx2_never_autocasts_to_bf16():
    """Under the AVX2 cap bf16 matmuls are emulated (about 1 GFLOP/s): the cap must turn native bf16 off."""
    import subprocess
    import sys

    code = "from sparsepo.training.hardware import cpu_has_native_bf16 as f; print(f())"
    for env in ({"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
        assert out.stdout.strip() == "False", (env, out.stderr[-2000:])
