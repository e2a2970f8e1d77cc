"""Ray Train on a local Ray instance: DDP equivalence, exact resume after a killed worker, checkpoint format."""

import glob
import os
import tempfile

import pytest
import ray
from transformers import AutoModelForCausalLM

from sparsepo.assets import tiny_model_path
from sparsepo.config.schema import load_config
from sparsepo.training.train import make_trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, ignore_reinit_error=True, log_to_driver=True)
    yield
    ray.shutdown()


def tiny_cfg(tmp_path, name, **over):
    base = [
        "method=sparsepo",
        "model.name=tiny-llama",
        "data.path=offline:review-pairs",
        "data.limit=32",
        "data.max_length=64",
        "data.max_prompt_length=40",
        "optim.lr=1e-3",
        "optim.max_steps=6",
        "optim.warmup_ratio=0",
        "loss.beta=0.5",
        "loss.l1_u=0.001",
        "mask.kind=learned",
        f"run.storage_path={tmp_path}",
        f"run.name={name}",
        "run.chunk_size=64",
        "run.log_every=1",
        "optim.bf16=false",  # fp32: the equivalences below are exact up to summation order, bf16 ones are not
    ]
    return load_config(None, base + [f"{k}={v}" for k, v in over.items()])


def losses(result):
    return [m["loss"] for m in result.return_value]


def test_two_workers_match_one_worker_with_same_global_batch(local_ray, tmp_path):
    one = make_trainer(tiny_cfg(tmp_path, "w1", **{"optim.batch_size": 4, "run.num_workers": 1})).fit()
    two = make_trainer(tiny_cfg(tmp_path, "w2", **{"optim.batch_size": 2, "run.num_workers": 2})).fit()
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 6
    assert a[0] != a[-1]  # training moved
    assert a == pytest.approx(b, rel=2e-4, abs=2e-5)


def test_grad_accumulation_matches_a_bigger_batch(local_ray, tmp_path):
    big = make_trainer(tiny_cfg(tmp_path, "big", **{"optim.batch_size": 4, "optim.max_steps": 3})).fit()
    acc = make_trainer(
        tiny_cfg(tmp_path, "acc", **{"optim.batch_size": 2, "optim.grad_accum": 2, "optim.max_steps": 3})
    ).fit()
    # The two micro-batches of the accumulated run must be the big batch's two halves: same sampler order.
    assert losses(big) == pytest.approx(losses(acc), rel=2e-4, abs=2e-5)


def test_killed_worker_resumes_from_checkpoint_as_if_uninterrupted(local_ray, tmp_path):
    common = {"optim.batch_size": 2, "run.save_every": 3, "mask.kind": "random"}  # random masks: RNG state matters
    clean = make_trainer(tiny_cfg(tmp_path, "clean", **common)).fit()
    crashed = make_trainer(
        tiny_cfg(tmp_path, "crash", **common, **{"run.chaos_kill_at_step": 5, "run.max_failures": 1})
    ).fit()
    assert (tmp_path / ".chaos-crash-5").exists()  # the worker really was killed once
    assert [m["step"] for m in crashed.return_value] == list(range(1, 7))
    assert losses(crashed) == pytest.approx(losses(clean), rel=1e-5, abs=1e-6)


def test_checkpoint_is_a_plain_hf_folder_and_no_staging_copy_is_left(local_ray, tmp_path):
    staged = set(glob.glob(os.path.join(tempfile.gettempdir(), "sparsepo-ckpt-*")))
    result = make_trainer(
        tiny_cfg(tmp_path, "ckpt", **{"optim.max_steps": 2, "optim.batch_size": 2, "run.save_every": 1})
    ).fit()
    ckpt = result.checkpoint.path
    model = AutoModelForCausalLM.from_pretrained(f"{ckpt}/policy")
    assert model.config.model_type == "llama"
    for f in ("masks.pt", "train_state.pt", "config.yaml", "metrics.jsonl", "policy/tokenizer.json"):
        assert os.path.exists(f"{ckpt}/{f}"), f
    # Two checkpoints were written; their staging folders must not pile up in the temp dir.
    assert len(glob.glob(str(tmp_path / "ckpt" / "checkpoint_2*"))) == 2
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "sparsepo-ckpt-*"))) <= staged


def test_lora_run_saves_merged_policy_and_trains_masks(local_ray, tmp_path):
    lora = {"optim.max_steps": 3, "optim.batch_size": 2, "lora.r": 4, "lora.target_modules": "[q_proj,v_proj]"}
    result = make_trainer(tiny_cfg(tmp_path, "lora", **lora)).fit()
    ckpt = result.checkpoint.path
    assert os.path.exists(f"{ckpt}/adapter/adapter_config.json")
    merged = AutoModelForCausalLM.from_pretrained(f"{ckpt}/policy")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert losses(result)[0] != losses(result)[-1]
    # The default LoRA reference is the policy with its adapters off (no second copy); a separately loaded
    # copy of the same weights (model.ref as a path) must give the same run.
    separate = make_trainer(tiny_cfg(tmp_path, "lora-ref", **lora, **{"model.ref": tiny_model_path("llama")})).fit()
    assert losses(result) == pytest.approx(losses(separate), rel=1e-5, abs=1e-6)
    # Under DDP too: the reference pass toggles the adapters of the DDP-wrapped policy off and on again.
    ddp = make_trainer(tiny_cfg(tmp_path, "lora-ddp", **{**lora, "optim.batch_size": 1, "run.num_workers": 2})).fit()
    assert losses(result) == pytest.approx(losses(ddp), rel=2e-4, abs=2e-5)


def test_train_step_logs_the_per_micro_batch_float_means_without_a_host_sync_per_micro_batch(monkeypatch):
    """Metrics stay device tensors through the micro-batches; converted once they equal the old float sums exactly."""
    import torch
    from transformers import get_constant_schedule

    from sparsepo.training.optim import build_optimizer
    from sparsepo.training.preference_model import PreferenceModel, Reference
    from sparsepo.training.progress import to_host
    from sparsepo.training.trainer import Worker, _train_step
    from tests.sparsepo.training.test_forward import make_batch, tiny

    cfg = load_config(None, ["method=tdpo2", "optim.grad_accum=3", "optim.bf16=false"])
    model, reference = PreferenceModel(tiny("llama", 0).float(), "tdpo2"), Reference(tiny("llama", 1).float(), "tdpo2")
    batches = [make_batch(seed) for seed in range(3)]
    want: dict[str, float] = {}
    for b in batches:  # the weights change only after the last micro-batch: same values as inside the step
        for k, v in model(b, reference(b)).result.metrics.items():
            want[k] = want.get(k, 0.0) + float(v) / 3
    opt = build_optimizer(cfg, model)
    w = Worker(cfg, 0, 1, torch.device("cpu"), None, model, reference, [], ddp_model=model, optimizer=opt,
               scheduler=get_constant_schedule(opt))
    synced = []
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: synced.append(t) or t.item())
    sums, grad_norm, tokens = _train_step(w, iter(batches), None)
    assert not synced and w.step == 1
    got = to_host(sums)
    assert got == want and len(got) > 5
    assert int(tokens) == sum(int(b["attention_mask"].sum()) for b in batches) and float(grad_norm) > 0


def test_qlora_run_trains_adapters_over_a_4bit_base_and_saves_them_merged_into_the_full_base(local_ray, tmp_path):
    """The saved policy is the adapters merged into the unquantized base (how QLoRA adapters are released),
    checked against peft's own merge of the saved adapter into a freshly loaded float base."""
    import torch
    from peft import PeftModel

    qlora = {"optim.max_steps": 3, "optim.batch_size": 2, "lora.r": 4, "lora.quantize": "nf4", "optim.bf16": False}
    result = make_trainer(tiny_cfg(tmp_path, "qlora", **qlora)).fit()
    ckpt = result.checkpoint.path
    assert losses(result)[0] != losses(result)[-1]
    saved = AutoModelForCausalLM.from_pretrained(f"{ckpt}/policy")
    assert getattr(saved.config, "quantization_config", None) is None
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path("llama"))
    adapters = PeftModel.from_pretrained(base, f"{ckpt}/adapter")
    assert any(p.abs().sum() > 0 for n, p in adapters.named_parameters() if "lora_B" in n)  # it trained
    expected = adapters.merge_and_unload().state_dict()
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(tensor, expected[name])
    assert any(not torch.equal(saved.state_dict()[n], t) for n, t in
               AutoModelForCausalLM.from_pretrained(tiny_model_path("llama")).state_dict().items())


def _adamw_by_hand(p0, grads, lr, betas, eps, wd):  # noqa: ANN001, ANN202
    """Loshchilov & Hutter's AdamW written out: decoupled decay, bias-corrected moments."""
    p, m, v = p0.clone().double(), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        g = g.double()
        p = p * (1 - lr * wd)
        m, v = betas[0] * m + (1 - betas[0]) * g, betas[1] * v + (1 - betas[1]) * g * g
        p = p - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
    return p


def test_every_adamw_kernel_makes_the_same_update_as_adamw_written_out():
    """optim.adamw=auto (fused), foreach and loop give AdamW's update for the policy and mask groups, mask decay
    included, to float rounding of the hand-written double-precision reference."""
    import copy

    import torch

    from sparsepo.training.optim import build_optimizer
    from sparsepo.training.preference_model import PreferenceModel
    from tests.sparsepo.training.test_forward import tiny

    base = PreferenceModel(tiny("llama", 0).float(), "sparsepo")
    start = {n: p.detach().clone() for n, p in base.named_parameters()}
    torch.manual_seed(0)
    grads = [{n: torch.randn_like(p) for n, p in base.named_parameters()} for _ in range(3)]
    for kernel in ("auto", "foreach", "loop"):
        cfg = load_config(None, ["method=sparsepo", f"optim.adamw={kernel}", "optim.lr=1e-2",
                                 "optim.weight_decay=0.1", "mask.weight_decay=0.3"])
        model = copy.deepcopy(base)
        opt = build_optimizer(cfg, model)
        for g in grads:
            for n, p in model.named_parameters():
                p.grad = g[n].clone()
            opt.step()
        decay = {id(p): grp["weight_decay"] for grp in opt.param_groups for p in grp["params"]}
        rate = {id(p): grp["lr"] for grp in opt.param_groups for p in grp["params"]}
        assert 0.3 in decay.values() and 0.1 in decay.values()
        assert set(rate.values()) == {1e-2, 1e-3}  # the masks' own rate (mask.lr)
        for n, p in model.named_parameters():
            want = _adamw_by_hand(start[n], [g[n] for g in grads], rate[id(p)], (0.9, 0.999), 1e-8, decay[id(p)])
            torch.testing.assert_close(p.detach().double(), want, rtol=0, atol=2e-6, msg=f"{kernel}: {n}")
