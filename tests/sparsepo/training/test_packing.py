"""Shared-prompt packing, one pair per row or several: the same per-token values and gradients as the padded
batch, for every model family, mask kind and objective."""

import pytest
import torch

from sparsepo.data.preference import PreferenceCollator
from sparsepo.objectives.losses import LOSSES
from sparsepo.objectives.masks import MaskConfig, model_dims
from sparsepo.training.forward import decoder_forward, pair_decoder_forward, pair_packing
from sparsepo.training.packing import ONE_ROW, first_fit_decreasing, pack_pairs
from sparsepo.training.preference_model import PreferenceModel, Reference
from sparsepo.training.varlen import supports_varlen
from tests.sparsepo.training.random_models import tiny

# (prompt, chosen, rejected) lengths. RAGGED: pairs of 16, 14, 16, 6, 3, 22, 9 and 11 tokens; with the longest
# (22) as the budget they pack into 5 rows: [22], [16, 6], [16, 3], [14], [11, 9].
THREE = [(5, 4, 7), (9, 3, 2), (2, 8, 6)]
RAGGED = [*THREE, (3, 2, 1), (1, 1, 1), (4, 6, 12), (2, 3, 4), (6, 2, 3)]


def pair_batch(seed: int = 0, shapes: list[tuple[int, int, int]] = THREE) -> dict[str, torch.Tensor]:
    """Pairs with different prompt and response lengths, collated as the trainer does."""
    g = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(1, 97, (n,), generator=g).tolist()

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


def test_first_fit_decreasing_places_longest_first_without_overlap():
    assert first_fit_decreasing([16, 14, 16, 6, 3, 22, 9, 11], 22) == [
        (1, 0), (3, 0), (2, 0), (1, 16), (2, 16), (0, 0), (4, 11), (4, 0)]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        sizes = torch.randint(1, 30, (int(torch.randint(1, 12, (1,), generator=g)),), generator=g).tolist()
        place = first_fit_decreasing(sizes, 30)
        used = {}
        for (row, o), n in zip(place, sizes, strict=True):
            cells = set(range(o, o + n))
            assert o + n <= 30 and not cells & used.get(row, set())
            used[row] = used.get(row, set()) | cells
        assert sorted(used) == list(range(len(used)))  # rows are numbered densely


def test_multi_pair_rows_reset_positions_and_keep_pairs_apart():
    batch = pair_batch(0, RAGGED)
    packed, single = pack_pairs(batch), pack_pairs(batch, None)
    assert packed.input_ids.shape == (5, 22) and single.input_ids.shape == (8, 22)
    assert pack_pairs(batch, 40).input_ids.shape[0] == 3  # 97 tokens in rows of 40
    real = batch["attention_mask"].bool()
    for p in (packed, single, pack_pairs(batch, 40)):
        # Every real token lands on its own id and its padded position (positions restart in every pair).
        assert p.unpack(p.input_ids.unsqueeze(-1)).squeeze(-1)[real].equal(batch["input_ids"][real])
        want_pos = batch["attention_mask"].cumsum(-1) - 1
        assert p.unpack(p.position_ids.unsqueeze(-1)).squeeze(-1)[real].equal(want_pos[real])
    # The 22-token pair fills a row alone; row 1 holds a 16- and a 6-token pair with no padding.
    assert packed.position_ids[0].tolist() == list(range(10)) + list(range(4, 16))
    assert packed.position_ids[1].tolist() == list(range(9)) + list(range(5, 12)) + [0, 1, 2, 3, 4, 3]
    # Block-diagonal: a pair's tokens see only their own pair (tokens 16.. of row 1 are the second pair).
    assert not packed.allowed[1, 0, 16:, :16].any() and not packed.allowed[1, 0, :16, 16:].any()
    assert packed.allowed[1, 0, 16:, 16:].sum() == 15 + 4  # prompt 3 + chosen 2: causal over 5; rejected: 3 + itself
    # Each real token's context, read through index, is exactly the causal prefix of its padded row.
    flat = packed.allowed[:, 0].reshape(-1, 22)  # (rows * T, T): the keys of each flat position in its row
    for j in range(16):
        n, cols = int(real[j].sum()), packed.index[j, : int(real[j].sum())]
        seen = flat[cols][:, cols % 22]
        assert seen.equal(torch.ones(n, n, dtype=torch.bool).tril())
        assert flat[cols].sum(-1).equal(torch.arange(1, n + 1))  # and nothing else


def test_batches_that_are_not_pairs_with_one_prompt_stay_padded():
    batch = pair_batch()
    assert pack_pairs({k: v[:5] for k, v in batch.items()}) is None  # odd number of rows
    other = {k: v.clone() for k, v in batch.items()}
    other["input_ids"][3, 0] += 1  # rejected row of pair 0 has another prompt
    assert pack_pairs(other) is None


@pytest.mark.parametrize("shapes, row_tokens", [(THREE, None), (RAGGED, 0), (RAGGED, 40), (RAGGED, ONE_ROW)])
@pytest.mark.parametrize("arch, attn", [(a, i) for a in ("gpt2", "llama", "gpt_neox") for i in ("sdpa", "eager")])
def test_packed_hidden_states_equal_padded(arch, attn, shapes, row_tokens):
    """SDPA models run the rows pair by pair (sparsepo.training.varlen), eager ones with the dense block-diagonal mask."""
    model, batch = tiny(arch, 0, attn), pair_batch(1, shapes)
    want, want_layers = decoder_forward(model, batch["input_ids"], batch["attention_mask"], output_hidden_states=True)
    got, got_layers = pair_decoder_forward(model, batch, pack_pairs(batch, row_tokens), output_hidden_states=True)
    assert model.config._attn_implementation == attn  # the per-pair attention was switched back
    real = batch["attention_mask"].bool()
    tol = {"rtol": 1e-9, "atol": 1e-10} if attn == "sdpa" else {"rtol": 1e-5, "atol": 1e-6}  # eager: fp32 softmax
    torch.testing.assert_close(got[real], want[real], **tol)
    for a, b in zip(got_layers, want_layers, strict=True):
        torch.testing.assert_close(a[real], b[real], **tol)


def step(arch, method, batch, shared, multi_pair=True):
    """One step of ``method`` on ``batch``: its output and the gradients of every trained parameter."""
    mask = MaskConfig(mapo="all")
    ref = Reference(tiny(arch, 1), method, mask, shared_prompt=shared, oracle=tiny(arch, 3),
                    multi_pair=multi_pair)
    policy = tiny(arch, 0)
    torch.manual_seed(5)
    model = PreferenceModel(policy, method, {}, mask, model_dims(policy), log_kl=True, shared_prompt=shared,
                            multi_pair=multi_pair).double()
    model.zero_grad()
    out = model(batch, ref(batch) if ref.spec.needs_reference else None)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_step(got, want):
    (got, g_got), (want, g_want) = got, want
    for side in ("chosen", "rejected"):
        for key, a in vars(getattr(want, side)).items():
            if a is not None:
                torch.testing.assert_close(getattr(getattr(got, side), key), a, rtol=1e-8, atol=1e-10, msg=key)
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-10, atol=1e-12)
    assert g_got.keys() == g_want.keys() and g_got
    for n in g_want:  # llama's fp32 RoPE tables: ~1e-7 of the gradient's scale (IPO's are ~10x DPO's), as one pair a row
        scale = max(1.0, g_want[n].abs().max().item())
        torch.testing.assert_close(g_got[n], g_want[n], rtol=1e-6, atol=1e-7 * scale, msg=n)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("method", ["dpo", "tdpo1", "sparsepo", "mapo", "simpo", "tisdpo", "confpo", "sparsepo_ipo"])
def test_packed_step_equals_padded_values_and_gradients(arch, method):
    batch = pair_batch(2)
    assert_same_step(step(arch, method, batch, True, multi_pair=False), step(arch, method, batch, False))


PAIR_OBJECTIVES = sorted(m for m, spec in LOSSES.items() if spec.inputs == "pairs")


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("method", PAIR_OBJECTIVES)
def test_multi_pair_step_equals_padded_values_and_gradients(arch, method):
    batch = pair_batch(2, RAGGED)
    assert pair_packing(tiny(arch, 0), batch, True).input_ids.shape == (1, 97)  # all pairs in one row, no padding
    assert_same_step(step(arch, method, batch, True), step(arch, method, batch, False))


def test_per_pair_attention_only_where_it_applies():
    model = tiny("llama", 0)
    assert supports_varlen(model) and not supports_varlen(tiny("llama", 0, "eager"))
    batch = pair_batch(0, RAGGED)
    assert pair_packing(model, batch, False).input_ids.shape == (8, 22)  # switched off: one pair per row
    assert pair_packing(tiny("gpt2", 0, "eager"), batch, True).input_ids.shape == (8, 22)  # dense mask: no gain
    eager_policy = tiny("llama", 0, "eager")  # a reference's one-row packing is not reused for a dense-mask policy
    assert pair_packing(eager_policy, batch, True, reuse=pair_packing(model, batch, True)).input_ids.shape == (8, 22)
    model.gradient_checkpointing_enable()
    assert not supports_varlen(model)  # its recompute would run without the per-pair attention
