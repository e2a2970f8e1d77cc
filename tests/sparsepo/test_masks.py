"""Learned mask networks and the MaPO activation mask."""

import pytest
import torch
import transformers as T

from sparsepo.losses import preference_loss
from sparsepo.masks import (
    ActivationMask,
    LearnedMask,
    MaskConfig,
    build_mask_networks,
    decay_groups,
    hook_points,
    normalise_per_sequence,
)
from sparsepo.preference_model import PreferenceModel, Reference
from tests.sparsepo.test_forward import make_batch, tiny


def test_learned_mask_matches_written_out_formula():
    torch.manual_seed(0)
    net = LearnedMask(hidden_size=8, n_layers=3)
    hs = [torch.randn(2, 5, 8) for _ in range(3)]
    got = net(hs)
    ln = net.norm
    g = [torch.relu(ln(hs[l]) @ net.per_layer[l].weight[0] + net.per_layer[l].bias[0]) for l in range(3)]  # noqa: E741
    want = torch.relu(sum(net.merge.weight[0, l] * g[l] for l in range(3)))  # noqa: E741
    torch.testing.assert_close(got, want)
    assert (got >= 0).all() and (got == 0).any()


def test_init_follows_methods():
    net = LearnedMask(hidden_size=64, n_layers=30, depth=2)
    w = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, torch.nn.Linear)])
    assert abs(w.std().item() - 0.02) < 0.002
    assert all(not m.bias.any() for m in net.modules() if isinstance(m, torch.nn.Linear) and m.bias is not None)
    assert torch.equal(net.norm.weight, torch.ones(64)) and not net.norm.bias.any()


def test_binary_mask_is_zero_one_with_straight_through_gradient():
    torch.manual_seed(1)
    net = LearnedMask(hidden_size=8, n_layers=2, binary=True)
    hs = [torch.randn(3, 7, 8) for _ in range(2)]
    m = net(hs)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    m.sum().backward()
    assert net.merge.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("sharing,layers,depth", [("independent", "all", 1), ("common", "last", 2)])
def test_learned_masks_in_training_step(arch, sharing, layers, depth):
    policy, ref = tiny(arch, 0).float(), tiny(arch, 1).float()
    cfg = MaskConfig(sharing=sharing, layers=layers, depth=depth, weight_decay=0.05)
    model = PreferenceModel(policy, "sparsepo", {"l1_u": 0.01, "l1_d": 0.01}, cfg)
    # With only 2 layers, a merge vector with both entries negative gives an all-zero (dead) mask at init.
    for net in model.masks.values():
        net.merge.weight.data.abs_()
    batch = make_batch(4)
    out = model(batch, Reference(ref, "sparsepo", cfg)(batch))
    out.loss.backward()
    assert set(model.masks) == ({"reward", "kl"} if sharing == "independent" else {"reward"})
    for side in (out.chosen, out.rejected):
        assert (side.reward_mask >= 0).all()
        assert (side.reward_mask[side.mask == 0] == 0).all()  # prompt/padding never weighted
    for p in model.masks.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    zeros = ((out.chosen.reward_mask == 0) & (out.chosen.mask > 0)).sum(-1) / out.chosen.mask.sum(-1)
    assert out.result.metrics["mask/reward/chosen/sparsity"].item() == pytest.approx(100 * zeros.mean().item(), rel=1e-5)


def test_mask_decay_group_holds_only_linear_weights():
    nets = build_mask_networks(MaskConfig(depth=2), 16, 3)
    groups = decay_groups(nets, 0.01)
    decay = {id(p) for p in groups[0]["params"]}
    linear_w = {id(m.weight) for m in nets.modules() if isinstance(m, torch.nn.Linear)}
    assert decay == linear_w and groups[0]["weight_decay"] == 0.01
    assert groups[1]["weight_decay"] == 0.0
    assert len(decay) + len(groups[1]["params"]) == len(list(nets.parameters()))


def test_random_mask_has_no_parameters_and_changes_each_step():
    nets = build_mask_networks(MaskConfig(kind="random"), 16, 2)
    hs = [torch.zeros(2, 4, 16)]
    a, b = nets["reward"](hs), nets["reward"](hs)
    assert not list(nets.parameters()) and not torch.equal(a, b) and ((a >= 0) & (a < 1)).all()


def test_normalise_per_sequence_against_naive():
    a = torch.tensor([[3.0, 1.0, 4.0, 1.0, 5.0], [2.0, 7.0, 1.0, 8.0, 2.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    got = normalise_per_sequence(a, mask)
    for b in range(2):
        vals = [a[b, i].item() for i in range(5) if mask[b, i]]
        lo, hi = min(vals), max(vals)
        want = [((a[b, i].item() - lo) / (hi - lo)) if mask[b, i] else 0.0 for i in range(5)]
        assert got[b].tolist() == pytest.approx(want, abs=1e-6)
    one = normalise_per_sequence(torch.tensor([[5.0, 2.0]]), torch.tensor([[0.0, 1.0]]))
    assert one.tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("kind", ["all", "mlp", "attn", "resid", "logits"])
def test_activation_masks_in_unit_interval(arch, kind):
    ref = tiny(arch, 2).float()
    batch = make_batch(5)
    out = Reference(ref, "mapo", MaskConfig(mapo=kind))(batch)
    m, resp = out.masks, batch["loss_mask"][:, 1:].bool()
    assert m.shape == resp.shape
    assert (m[resp] >= 0).all() and (m[resp] <= 1).all() and (m[~resp] == 0).all()
    if kind == "logits":  # a single hooked tensor: each sequence spans exactly [0, 1]
        for row in range(m.shape[0]):
            vals = m[row][resp[row]]
            assert torch.isclose(vals.max(), torch.tensor(1.0)) and vals.min() < 1e-6


def test_activation_hooks_found_on_each_architecture():
    for arch, n in (("gpt2", 2), ("llama", 2), ("gpt_neox", 2)):
        points = hook_points(tiny(arch, 0))
        assert all(len(v) == n for v in points.values())
        assert "Activation" in type(points["mlp"][0]).__name__


def test_logits_activation_equals_mean_of_full_logits():
    ref = tiny("llama", 3).float()
    batch = make_batch(6)
    am = ActivationMask(ref, "logits")
    out = Reference(ref, "mapo", MaskConfig(mapo="logits"))(batch)
    logits = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.mean(-1)[:, :-1]
    want = normalise_per_sequence(logits, batch["loss_mask"][:, 1:].float())
    torch.testing.assert_close(out.masks, want, rtol=1e-4, atol=1e-5)
    del am


def test_mapo_uniform_equals_tdpo1():
    policy, ref = tiny("gpt2", 0), tiny("gpt2", 1)
    batch = make_batch(7)
    mapo = PreferenceModel(policy, "mapo", {"beta": 0.2})(batch, Reference(ref, "mapo", MaskConfig(mapo="uniform"))(batch))
    tdpo = PreferenceModel(policy, "tdpo1", {"beta": 0.2})(batch, Reference(ref, "tdpo1")(batch))
    torch.testing.assert_close(mapo.result.losses, tdpo.result.losses, rtol=0, atol=1e-12)


def test_sparsepo_unit_masks_equal_tdpo1_through_the_model():
    policy, ref = tiny("llama", 0), tiny("llama", 1)
    batch = make_batch(8)
    ref_out = Reference(ref, "tdpo1")(batch)
    tdpo = PreferenceModel(policy, "tdpo1")(batch, ref_out)
    c, r = tdpo.chosen, tdpo.rejected
    sp = preference_loss(
        "sparsepo",
        {**vars(c), "reward_mask": c.mask.clone(), "kl_mask": c.mask.clone()},
        {**vars(r), "reward_mask": r.mask.clone(), "kl_mask": r.mask.clone()},
    )
    torch.testing.assert_close(sp.losses, tdpo.result.losses, rtol=0, atol=0)


def test_unknown_options_are_errors():
    with pytest.raises(KeyError, match="unknown mask kind"):
        build_mask_networks(MaskConfig(kind="magic"), 8, 2)
    with pytest.raises(ValueError, match="layers"):
        build_mask_networks(MaskConfig(layers="first"), 8, 2)
    with pytest.raises(ValueError, match="MaPO mask kind"):
        ActivationMask(tiny("gpt2", 0), "everything")
    T.logging.set_verbosity_error()
