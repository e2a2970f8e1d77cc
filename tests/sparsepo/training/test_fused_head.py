"""The fused LM head (sparsepo.training.fused_head) against the autograd reference (lm_head.chunked_token_stats)."""

import pytest
import torch

from sparsepo.training.fused_head import FusedChunk, chunk_forward_math, use_fused
from sparsepo.training.lm_head import LMHead, chunked_token_stats
from tests.sparsepo.training.test_forward import make_batch, tiny

D, V = 16, 101


def heads(kind: str, dtype: torch.dtype) -> tuple[LMHead, LMHead]:
    """Policy and reference heads; "transformed": a Gemma-2-like soft-cap and a Cohere-like scale, strong enough
    to matter (random init gives small logits, where both are near-linear)."""
    torch.manual_seed(1)
    proj, rproj = torch.nn.Linear(D, V, dtype=dtype), torch.nn.Linear(D, V, bias=False, dtype=dtype)
    if kind == "plain":
        return LMHead(proj), LMHead(rproj)
    with torch.no_grad():
        proj.weight.mul_(8.0)
        rproj.weight.mul_(8.0)
    return LMHead(proj, 1.7, 2.5), LMHead(rproj, 0.6, None)


def stats_and_grads(n, kl, with_ref, chunk, fused, kind="plain", dtype=torch.float64, autocast=False):
    """Values of chunked_token_stats and the gradients of a weighted sum of them w.r.t. h, head weight and bias."""
    head, rhead = heads(kind, dtype)
    g = torch.Generator().manual_seed(n)
    h_dtype = torch.bfloat16 if autocast else dtype  # what the decoder hands over under bf16 autocast
    h = torch.randn(n, D, generator=g, dtype=dtype).to(h_dtype).requires_grad_()
    hr = torch.randn(n, D, generator=g, dtype=dtype).to(h_dtype)
    y = torch.randint(0, V, (n,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = chunked_token_stats(h, y, head, hr if with_ref else None, rhead if with_ref else None, kl, chunk,
                                  fused=fused, compile_fused=False)
        w = torch.linspace(0.3, 1.7, n, dtype=torch.float32)
        loss = sum((v * w.to(v.dtype)).sum() for k, v in out.items() if k != "ref_logps")
    assert not any(v.requires_grad for k, v in out.items() if k == "ref_logps")
    params = [h, head.proj.weight, head.proj.bias]
    grads = torch.autograd.grad(loss, params) if n else [torch.zeros_like(p) for p in params]
    return out, grads


@pytest.mark.parametrize("kl", ["ref||pi", "pi||ref", None])
@pytest.mark.parametrize("with_ref", [True, False])
@pytest.mark.parametrize("chunk", [8, 64])  # 37 positions: 5 chunks with a short last one (recomputed); one chunk (kept)
@pytest.mark.parametrize("kind", ["plain", "transformed"])
def test_fused_values_and_gradients_equal_the_reference(kl, with_ref, chunk, kind):
    want, gw = stats_and_grads(37, kl, with_ref, chunk, fused=False, kind=kind)
    got, gg = stats_and_grads(37, kl, with_ref, chunk, fused=True, kind=kind)
    assert got.keys() == want.keys() == ({"logps"} | ({"ref_logps"} | ({"kl"} if kl else set()) if with_ref else set()))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-12)
    for a, b in zip(gg, gw, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert gg[0].abs().sum() > 0 and gg[1].abs().sum() > 0


@pytest.mark.parametrize("kl", ["ref||pi", "pi||ref"])
def test_fused_equals_the_reference_in_fp32_and_under_bf16_autocast(kl):
    for autocast in (False, True):
        want, gw = stats_and_grads(29, kl, True, 8, fused=False, kind="transformed", dtype=torch.float32, autocast=autocast)
        got, gg = stats_and_grads(29, kl, True, 8, fused=True, kind="transformed", dtype=torch.float32, autocast=autocast)
        for k in want:
            assert got[k].dtype == want[k].dtype == torch.float32
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-5)
        for a, b in zip(gg, gw, strict=True):
            assert a.dtype == b.dtype  # the bf16 hidden states get a bf16 gradient, as from autograd
            torch.testing.assert_close(a.float(), b.float(), rtol=1e-2 if autocast else 1e-5, atol=1e-4)


def test_no_positions_give_empty_fp32_outputs():
    got, _ = stats_and_grads(0, "ref||pi", True, 8, fused=True)
    assert set(got) == {"logps", "ref_logps", "kl"}
    assert all(v.shape == (0,) and v.dtype == torch.float32 for v in got.values())


def test_kl_of_identical_models_is_exactly_zero_and_fused_kl_is_nonnegative():
    head, _ = heads("transformed", torch.float64)
    h = torch.randn(11, D, dtype=torch.float64)
    y = torch.randint(0, V, (11,))
    z = torch.nn.functional.linear(h, head.weight, head.bias)
    cfg = ((head.scale, head.softcap),) * 2
    for mode in (1, 2):
        *_, kl = chunk_forward_math(z, z, y, *cfg, mode)
        assert kl.abs().max() == 0
        *_, kl = chunk_forward_math(z, z.roll(1, 0), y, *cfg, mode)
        assert (kl > 0).all()


def test_single_chunk_keeps_logits_and_several_chunks_recompute_them(monkeypatch):
    """Memory: with several chunks only (C, d) inputs and (C,) statistics are saved; one chunk keeps its logits."""
    saved = []
    orig = FusedChunk.forward

    def recording(ctx, *args):
        real = ctx.save_for_backward

        def save(*tensors):
            saved.append(max(t.numel() for t in tensors if t is not None))
            real(*tensors)

        ctx.save_for_backward = save
        return orig(ctx, *args)

    monkeypatch.setattr(FusedChunk, "forward", staticmethod(recording))
    stats_and_grads(37, "ref||pi", True, 64, fused=True)
    assert saved == [37 * V]
    saved.clear()
    stats_and_grads(37, "ref||pi", True, 8, fused=True)
    assert len(saved) == 5 and max(saved) == V * D  # the head weight; no (chunk, V) tensor


def test_the_switch(monkeypatch):
    import sparsepo.training.fused_head as fh

    cpu, big = torch.device("cpu"), fh.AUTO_MIN_HEAD
    assert use_fused(True, cpu, 1) and not use_fused(False, torch.device("cuda"), big)
    monkeypatch.setattr(fh, "AUTO_ON", frozenset({"cpu"}))
    assert use_fused("auto", cpu, big) and not use_fused("auto", cpu, big - 1)
    assert not use_fused("auto", torch.device("meta"), big)
    with pytest.raises(ValueError, match="run.fused_head must be true, false or 'auto'"):
        use_fused("yes", cpu, big)


def test_a_failing_compile_falls_back_to_the_uncompiled_fused_head(monkeypatch, caplog):
    import sparsepo.training.fused_head as fh

    def no_compiler(name):
        def fail(*a):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(fh, "_compiled", no_compiler)
    monkeypatch.setattr(fh, "_COMPILE_FAILED", set())
    head, rhead = heads("plain", torch.float64)
    h, y = torch.randn(9, D, dtype=torch.float64), torch.randint(0, V, (9,))
    got = chunked_token_stats(h, y, head, h, rhead, "ref||pi", 4, fused=True)
    want = chunked_token_stats(h, y, head, h, rhead, "ref||pi", 4)
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    assert fh._COMPILE_FAILED == {"chunk_forward_math"} and "running it uncompiled" in caplog.text


def training_step(fused, compiled, method="tdpo2"):
    from sparsepo.training.preference_model import PreferenceModel, Reference

    policy, ref = tiny("llama", 0).float(), tiny("llama", 1).float()
    model = PreferenceModel(policy, method, chunk_size=16, fused_head=fused)
    batch = make_batch(7, rows=4, length=13)
    if compiled is False:
        import sparsepo.training.fused_head as fh

        orig = fh._math
        fh._math = lambda name, _compiled: orig(name, False)
    try:
        out = model(batch, Reference(ref, method)(batch))
        out.loss.backward()
    finally:
        if compiled is False:
            fh._math = orig
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads, out.chosen.kl


@pytest.mark.parametrize("method", ["tdpo2", "dpo"])
def test_training_step_loss_and_gradients_equal_with_the_switch_on_and_off(method):
    """A tiny llama's preference step (several chunks of the fused head): same loss and gradients."""
    loss_a, grads_a, kl_a = training_step(False, None, method)
    loss_b, grads_b, kl_b = training_step(True, False, method)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and "policy.lm_head.weight" in grads_a
    for n in grads_a:
        torch.testing.assert_close(grads_b[n], grads_a[n], rtol=1e-4, atol=1e-6)
    assert (kl_a is None) == (kl_b is None) == (method == "dpo")


@pytest.mark.slow
def test_compiled_training_step_equals_eager_and_does_not_recompile_for_a_new_length():
    """torch.compile-d fused head (C++ Inductor on CPU; ~20-45 s to compile on 2 busy cores)."""
    import torch._dynamo

    torch._dynamo.reset()
    loss_a, grads_a, _ = training_step(False, None)
    loss_b, grads_b, _ = training_step(True, True)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    for n in grads_a:
        torch.testing.assert_close(grads_b[n], grads_a[n], rtol=1e-4, atol=1e-6)
    # another chunk length (dynamic shapes): no new graph
    from torch._dynamo.utils import counters

    frames = counters["stats"]["unique_graphs"]
    stats_compiled = chunked_token_stats(
        torch.randn(23, D), torch.randint(0, V, (23,)), heads("plain", torch.float32)[0], torch.randn(23, D),
        heads("plain", torch.float32)[1], "ref||pi", 16, fused=True,
    )
    assert counters["stats"]["unique_graphs"] == frames
    assert stats_compiled["kl"].shape == (23,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (Triton kernels of the compiled fused head)")
@pytest.mark.parametrize("kl", ["ref||pi", "pi||ref"])
def test_compiled_fused_head_on_cuda_equals_the_reference(kl):
    dev = torch.device("cuda")
    head, rhead = (m.to(dev) for m in heads("transformed", torch.float32))
    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, D, generator=g).to(dev, torch.bfloat16).requires_grad_()
    hr = torch.randn(300, D, generator=g).to(dev, torch.bfloat16)
    y = torch.randint(0, V, (300,), generator=g).to(dev)
    outs = []
    for fused in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            r = chunked_token_stats(h, y, head, hr, rhead, kl, 128, fused=fused)
        grads = torch.autograd.grad(r["kl"].sum() + r["logps"].sum(), [h, head.proj.weight])
        outs.append((r, grads))
    for k in outs[0][0]:
        torch.testing.assert_close(outs[1][0][k], outs[0][0][k], rtol=1e-4, atol=1e-4)
    for a, b in zip(outs[1][1], outs[0][1], strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-3)
