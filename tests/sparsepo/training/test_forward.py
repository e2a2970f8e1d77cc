"""Chunked token log-probs / KL against the naive full-vocabulary computation, on tiny real models."""

import pytest
import torch
import transformers as T

from sparsepo.training.forward import decoder_forward, lm_head, token_stats
from sparsepo.training.lm_head import chunked_token_stats
from sparsepo.training.preference_model import PreferenceModel, Reference
from tests.sparsepo.training.random_models import tiny


def make_batch(seed: int = 0, rows: int = 4, length: int = 13) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 97, (rows, length), generator=g)
    attn = torch.ones_like(ids)
    loss = torch.zeros_like(ids)
    loss[:, 4:] = 1
    attn[1, 9:] = 0
    loss[1, 9:] = 0
    if rows > 2:
        loss[2, :7] = 0
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss}


def naive_stats(policy, ref, batch):
    """Full (rows, L, vocab) log-softmax of both models, then gather and KL(ref || pi) everywhere."""
    lp = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].log_softmax(-1)
    with torch.no_grad():
        lr = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].log_softmax(-1)
    y = batch["input_ids"][:, 1:, None]
    mask = batch["loss_mask"][:, 1:].to(lp.dtype)
    kl = (lr.exp() * (lr - lp)).sum(-1)
    return lp.gather(-1, y).squeeze(-1) * mask, lr.gather(-1, y).squeeze(-1) * mask, kl * mask, mask


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_chunked_equals_naive_values_and_gradients(arch, chunk):
    policy, ref = tiny(arch, 0), tiny(arch, 1)
    batch = make_batch()
    ref_out = Reference(ref, "tdpo1")(batch)
    got = token_stats(policy, batch, ref_out, need_kl=True, chunk_size=chunk)
    lp, lr, kl, mask = naive_stats(policy, ref, batch)
    torch.testing.assert_close(got.mask, mask)
    torch.testing.assert_close(got.logps.double(), lp)
    torch.testing.assert_close(got.ref_logps.double(), lr)
    torch.testing.assert_close(got.kl.double(), kl)
    assert (got.kl[mask > 0] >= -1e-12).all()

    params = [p for p in policy.parameters() if p.requires_grad]
    w = torch.linspace(0.5, 1.5, kl.numel(), dtype=torch.float64).view_as(kl)
    g_got = torch.autograd.grad(((got.kl + got.logps) * w).sum(), params, allow_unused=True)
    g_want = torch.autograd.grad(((kl + lp) * w).sum(), params, allow_unused=True)
    for a, b in zip(g_got, g_want, strict=True):
        if b is None:
            assert a is None or not a.abs().sum()
        else:
            torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-9)


def test_kl_is_zero_for_identical_models_and_direction_matters():
    policy, ref = tiny("llama", 0), tiny("llama", 0)
    batch = make_batch(1)
    same = token_stats(policy, batch, Reference(ref, "tdpo1")(batch), need_kl=True)
    assert same.kl.abs().max() < 1e-10
    other = tiny("llama", 3)
    h, _ = decoder_forward(policy, batch["input_ids"], batch["attention_mask"])
    hr, _ = decoder_forward(other, batch["input_ids"], batch["attention_mask"])
    y = batch["input_ids"][0, 1:]
    fwd = chunked_token_stats(h[0, :-1], y, lm_head(policy), hr[0, :-1], lm_head(other), kl_direction="ref||pi")["kl"]
    rev = chunked_token_stats(h[0, :-1], y, lm_head(policy), hr[0, :-1], lm_head(other), kl_direction="pi||ref")["kl"]
    assert (fwd > 0).all() and (rev > 0).all() and not torch.allclose(fwd, rev)


def test_simpo_never_runs_the_reference():
    policy = tiny("gpt2", 0)
    calls = []
    ref = tiny("gpt2", 1)
    ref.register_forward_hook(lambda *a: calls.append(1))
    ref.base_model.register_forward_hook(lambda *a: calls.append(1))
    model = PreferenceModel(policy, "simpo")
    batch = make_batch(2)
    out = model(batch, None)
    out.loss.backward()
    assert not calls and out.chosen.ref_logps is None and out.chosen.kl is None
    with pytest.raises(ValueError, match="needs reference"):
        PreferenceModel(policy, "dpo")(batch, None)


def test_peak_memory_of_chunks_does_not_grow_with_sequence_length(monkeypatch):
    """The fp32 (positions, vocab) buffers are bounded by chunk_size: record the largest log-softmax output."""
    policy, ref = tiny("llama", 0).float(), tiny("llama", 1).float()
    biggest: list[int] = []
    orig = torch.Tensor.log_softmax

    def recording(self, *a, **k):
        out = orig(self, *a, **k)
        biggest.append(out.numel())
        return out

    monkeypatch.setattr(torch.Tensor, "log_softmax", recording)
    sizes = {}
    for length in (16, 64):
        biggest.clear()
        batch = make_batch(3, rows=2, length=length)
        out = token_stats(policy, batch, Reference(ref, "tdpo1")(batch), need_kl=True, chunk_size=8)
        out.kl.sum().backward()
        sizes[length] = max(biggest)
    assert sizes[16] == sizes[64] == 8 * 97


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("method", ["sparsepo", "mapo", "dpo"])
def test_lora_reference_from_disabled_adapters_equals_a_separate_copy(arch, method):
    """Under LoRA the reference is the policy with adapters off: same loss and gradients as a second copy."""
    import copy

    from peft import LoraConfig, get_peft_model

    from sparsepo.objectives.masks import MaskConfig, model_dims
    from sparsepo.training.forward import AdaptersOff
    from sparsepo.training.preference_model import disable_dropout

    base = tiny(arch, 0)
    separate = copy.deepcopy(base)
    torch.manual_seed(3)  # init_lora_weights=False: random B, so the adapters really change the policy
    policy = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    policy.double().train()
    disable_dropout(policy)  # as the trainer does; the reference pass then runs the policy in train mode safely
    mask = MaskConfig(mapo="all")
    batch = make_batch(5)
    shared = Reference(AdaptersOff(policy), method, mask)
    assert policy.training and any(p.requires_grad for p in policy.parameters())  # the policy was left alone
    torch.manual_seed(4)
    model = PreferenceModel(policy, method, {"beta": 0.3}, mask, model_dims(base)).double()

    def step(ref):
        model.zero_grad()
        out = model(batch, ref(batch))
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (loss_a, grads_a), (loss_b, grads_b) = step(shared), step(Reference(separate, method, mask))
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=1e-12)
    assert grads_a.keys() == grads_b.keys() and any("lora_" in n for n in grads_a)
    for n in grads_a:
        torch.testing.assert_close(grads_a[n], grads_b[n], rtol=1e-10, atol=1e-12)
    # Adapters are off only inside the reference pass: the policy still differs from its base afterwards.
    h_ref, _ = decoder_forward(AdaptersOff(policy), batch["input_ids"], batch["attention_mask"])
    h_pol, _ = decoder_forward(policy, batch["input_ids"], batch["attention_mask"])
    h_base, _ = decoder_forward(base, batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(h_ref, h_base)
    assert (h_pol - h_base).abs().max() > 1e-3


def test_adapters_off_refuses_a_plain_model_and_a_lora_lm_head():
    from peft import LoraConfig, get_peft_model

    from sparsepo.training.forward import AdaptersOff

    with pytest.raises(TypeError, match="needs a peft model"):
        AdaptersOff(tiny("llama", 0))
    # Reference logits come from the head module after the reference pass, where adapters are on again.
    headed = get_peft_model(tiny("llama", 0), LoraConfig(r=2, target_modules=["q_proj", "lm_head"]))
    with pytest.raises(ValueError, match="LM head carries LoRA weights.*model.ref"):
        AdaptersOff(headed)


def transformed_head_model(arch: str, seed: int) -> torch.nn.Module:
    """Tiny random models whose forward scales or soft-caps the LM head's output (strongly, so it matters)."""
    torch.manual_seed(seed)
    dims = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                vocab_size=97, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if arch == "gemma2":
        cfg = T.Gemma2Config(**dims, head_dim=8, final_logit_softcapping=0.7, attn_logit_softcapping=None)
    elif arch == "cohere":
        cfg = T.CohereConfig(**dims, logit_scale=7.0)
    else:
        cfg = T.GraniteConfig(**dims, logits_scaling=0.1)
    model = T.AutoModelForCausalLM.from_config(cfg).double().eval()
    with torch.no_grad():  # random init gives tiny logits, where any transform is near-linear
        model.get_output_embeddings().weight.mul_(20.0)
    return model


@pytest.mark.parametrize("arch", ["gemma2", "cohere", "granite"])
def test_logit_scaling_and_softcapping_match_the_models_own_logits(arch):
    policy, ref = transformed_head_model(arch, 0), transformed_head_model(arch, 1)
    batch = make_batch(6)
    got = token_stats(policy, batch, Reference(ref, "tdpo1")(batch), need_kl=True, chunk_size=5)
    lp, lr, kl, mask = naive_stats(policy, ref, batch)
    torch.testing.assert_close(got.logps.double(), lp, rtol=0, atol=1e-10)
    torch.testing.assert_close(got.ref_logps.double(), lr, rtol=0, atol=1e-10)
    torch.testing.assert_close(got.kl.double(), kl, rtol=0, atol=1e-10)
    # The bare linear head (the old computation) is far off: the test would catch a dropped transform.
    from sparsepo.training.lm_head import LMHead, logit_transform

    assert logit_transform(policy.config) != (1.0, None)
    h, _ = decoder_forward(policy, batch["input_ids"], batch["attention_mask"])
    bare = chunked_token_stats(h[:, :-1][mask > 0], batch["input_ids"][:, 1:][mask > 0], LMHead(lm_head(policy).proj))
    assert (bare["logps"] - lp[mask > 0]).abs().max() > 0.1


def test_unknown_logit_transform_is_refused():
    from sparsepo.training.lm_head import logit_transform

    cfg = T.LlamaConfig(num_hidden_layers=1, hidden_size=8, intermediate_size=16, num_attention_heads=2, vocab_size=11)
    cfg.logits_temperature_scaling = 2.0
    with pytest.raises(ValueError, match="llama config has logits_temperature_scaling=2.0.*logit_transform does not know"):
        logit_transform(cfg)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_without_kl_values_and_gradients_equal_naive(arch, chunk):
    """DPO-style stats (no token KL): label log-probs via logsumexp, reference outside any recompute."""
    policy, ref = tiny(arch, 0), tiny(arch, 1)
    batch = make_batch(4)
    got = token_stats(policy, batch, Reference(ref, "dpo")(batch), need_kl=False, chunk_size=chunk)
    lp, lr, _, mask = naive_stats(policy, ref, batch)
    assert got.kl is None
    torch.testing.assert_close(got.logps.double(), lp)
    torch.testing.assert_close(got.ref_logps.double(), lr)
    params = [p for p in policy.parameters() if p.requires_grad]
    w = torch.linspace(0.5, 1.5, lp.numel(), dtype=torch.float64).view_as(lp)
    g_got = torch.autograd.grad((got.logps * w).sum(), params, allow_unused=True)
    g_want = torch.autograd.grad((lp * w).sum(), params, allow_unused=True)
    for a, b in zip(g_got, g_want, strict=True):
        if b is None:
            assert a is None or not a.abs().sum()
        else:
            torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("need_kl", [False, True])
def test_head_is_recomputed_only_when_positions_span_several_chunks(monkeypatch, need_kl):
    import sparsepo.training.lm_head as fw

    policy, ref = tiny("llama", 0), tiny("llama", 1)
    batch = make_batch(6, rows=2, length=9)  # 2 x 8 predicted positions, 5 of row 0 and 8 of row 1 on the response
    calls = []
    orig = fw._fp32_logits
    monkeypatch.setattr(fw, "_fp32_logits", lambda h, w, b, head: calls.append(h.shape[0]) or orig(h, w, b, head))
    ref_out = Reference(ref, "tdpo1")(batch)
    n = int(batch["loss_mask"][:, 1:].sum())
    # one chunk: policy + ref head; two chunks: both per chunk, plus the recompute of the policy (with KL: and ref)
    for chunk, heads in ((n, 2), (n - 1, 8 if need_kl else 6)):
        calls.clear()
        out = token_stats(policy, batch, ref_out, need_kl=need_kl, chunk_size=chunk)
        (out.logps.sum() + (out.kl.sum() if need_kl else 0)).backward()
        assert len(calls) == heads, (chunk, calls)
