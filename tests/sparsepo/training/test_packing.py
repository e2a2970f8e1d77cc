"""Shared-prompt packing: the same per-token values and gradients as the padded batch, for every mask kind."""

import pytest
import torch
import transformers as T

from sparsepo.data.preference import PreferenceCollator
from sparsepo.objectives.masks import MaskConfig, model_dims
from sparsepo.training.forward import decoder_forward, pair_decoder_forward
from sparsepo.training.packing import pack_pairs
from sparsepo.training.preference_model import PreferenceModel, Reference


def tiny(arch: str, seed: int, attn: str = "sdpa") -> torch.nn.Module:
    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = T.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=64)
    elif arch == "llama":
        cfg = T.LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=97)
    else:
        cfg = T.GPTNeoXConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=97)
    return T.AutoModelForCausalLM.from_config(cfg, attn_implementation=attn).double().eval()


def pair_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Three pairs with different prompt and response lengths, collated as the trainer does."""
    g = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(1, 97, (n,), generator=g).tolist()

    shapes = [(5, 4, 7), (9, 3, 2), (2, 8, 6)]  # (prompt, chosen, rejected) lengths
    examples = [{"prompt_ids": ids(p), "chosen_ids": ids(c), "rejected_ids": ids(r)} for p, c, r in shapes]
    return PreferenceCollator(pad_token_id=0)(examples)


def test_packed_rows_hold_each_prompt_once():
    batch = pair_batch()
    packed = pack_pairs(batch)
    assert packed.input_ids.shape == (3, 16)  # longest prompt + chosen + rejected: 9 + 3 + 2 vs 2 + 8 + 6
    assert int(packed.allowed.diagonal(dim1=-2, dim2=-1).all()) and packed.position_ids[0].tolist()[:16] == (
        list(range(9)) + list(range(5, 12)))
    # The rejected tokens of pair 0 never see its chosen response.
    assert not packed.allowed[0, 0, 9:16, 5:9].any() and packed.allowed[0, 0, 9:16, :5].all()
    assert packed.unpack(packed.input_ids.unsqueeze(-1)).squeeze(-1)[batch["attention_mask"].bool()].equal(
        batch["input_ids"][batch["attention_mask"].bool()])


def test_batches_that_are_not_pairs_with_one_prompt_stay_padded():
    batch = pair_batch()
    assert pack_pairs({k: v[:5] for k, v in batch.items()}) is None  # odd number of rows
    other = {k: v.clone() for k, v in batch.items()}
    other["input_ids"][3, 0] += 1  # rejected row of pair 0 has another prompt
    assert pack_pairs(other) is None


@pytest.mark.parametrize("arch, attn", [("gpt2", "sdpa"), ("llama", "sdpa"), ("llama", "eager"), ("gpt_neox", "sdpa")])
def test_packed_hidden_states_equal_padded(arch, attn):
    model, batch = tiny(arch, 0, attn), pair_batch(1)
    want, want_layers = decoder_forward(model, batch["input_ids"], batch["attention_mask"], output_hidden_states=True)
    got, got_layers = pair_decoder_forward(model, batch, pack_pairs(batch), output_hidden_states=True)
    real = batch["attention_mask"].bool()
    tol = {"rtol": 1e-9, "atol": 1e-10} if attn == "sdpa" else {"rtol": 1e-5, "atol": 1e-6}  # eager: fp32 softmax
    torch.testing.assert_close(got[real], want[real], **tol)
    for a, b in zip(got_layers, want_layers, strict=True):
        torch.testing.assert_close(a[real], b[real], **tol)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("method", ["dpo", "tdpo1", "sparsepo", "mapo", "simpo", "tisdpo", "confpo", "sparsepo_ipo"])
def test_packed_step_equals_padded_values_and_gradients(arch, method):
    policy, batch = tiny(arch, 0), pair_batch(2)
    mask = MaskConfig(mapo="all")
    results = []
    for shared in (False, True):
        ref = Reference(tiny(arch, 1), method, mask, shared_prompt=shared, oracle=tiny(arch, 3))
        torch.manual_seed(5)
        model = PreferenceModel(policy, method, {}, mask, model_dims(policy), log_kl=True, shared_prompt=shared).double()
        model.zero_grad()
        out = model(batch, ref(batch) if ref.spec.needs_reference else None)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (want, g_want), (got, g_got) = results
    for side in ("chosen", "rejected"):
        for key, a in vars(getattr(want, side)).items():
            if a is not None:
                torch.testing.assert_close(getattr(getattr(got, side), key), a, rtol=1e-8, atol=1e-10, msg=key)
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-10, atol=1e-12)
    assert g_got.keys() == g_want.keys() and g_got
    for n in g_want:
        torch.testing.assert_close(g_got[n], g_want[n], rtol=1e-6, atol=1e-7, msg=n)  # llama: fp32 RoPE tables
