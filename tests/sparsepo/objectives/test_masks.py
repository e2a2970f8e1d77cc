"""Learned mask networks and the MaPO activation mask."""

import typing

import pytest
import torch
import transformers as T

from sparsepo.config.typed import hints
from sparsepo.objectives.losses import preference_loss
from sparsepo.objectives.masks import (
    MAPO_KINDS,
    MASKS,
    ActivationMask,
    LearnedMask,
    MaskConfig,
    build_mask_networks,
    decay_groups,
    hook_points,
    normalise_per_sequence,
)
from sparsepo.training.preference_model import PreferenceModel, Reference
from tests.sparsepo.training.test_forward import make_batch, tiny


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


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("layers,depth,shared_prompt", [("all", 1, True), ("last", 2, True), ("all", 2, False)])
def test_step_masks_equal_the_networks_on_the_raw_reference_states(arch, layers, depth, shared_prompt):
    """The step's masks (reference states gathered, normalised once, packed or padded) against each network's own
    LayerNorm and heads applied to Hugging Face's hidden states of the padded batch at the response positions."""
    policy, ref = tiny(arch, 0).float(), tiny(arch, 1).float()
    cfg = MaskConfig(layers=layers, depth=depth)
    model = PreferenceModel(policy, "sparsepo", {}, cfg, shared_prompt=shared_prompt)
    batch = make_batch(3)
    ref_out = Reference(ref, "sparsepo", cfg, shared_prompt=shared_prompt)(batch)
    model.calibrate_masks([batch], [ref_out])  # the centred start: masks far from all-zero
    out = model(batch, ref_out)
    with torch.no_grad():
        hs = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    keep = batch["loss_mask"][:, 1:] > 0
    raw = [h[:, :-1][keep] for h in hs.hidden_states[1:]]
    raw = raw if layers == "all" else raw[-1:]
    for name, side in (("reward", "reward_mask"), ("kl", "kl_mask")):
        got = torch.cat([getattr(out.chosen, side), getattr(out.rejected, side)])
        want = torch.zeros(keep.shape).index_put((keep,), model.masks[name](raw).detach())
        assert (want > 0).float().mean() > 0.2
        torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=1e-5)


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


def test_config_choices_are_the_registered_kinds():
    # MaskConfig lives apart from the networks (a config loads without torch), so its Literals list them.
    tps = hints(MaskConfig)
    assert typing.get_args(tps["kind"]) == tuple(MASKS)
    assert typing.get_args(tps["mapo"]) == (*MAPO_KINDS, "all", "uniform")


def test_unknown_options_are_errors():
    with pytest.raises(KeyError, match="unknown mask kind"):
        build_mask_networks(MaskConfig(kind="magic"), 8, 2)
    with pytest.raises(ValueError, match="layers"):
        build_mask_networks(MaskConfig(layers="first"), 8, 2)
    with pytest.raises(ValueError, match="MaPO mask kind"):
        ActivationMask(tiny("gpt2", 0), "everything")
    T.logging.set_verbosity_error()


# ------------------------------------------------------------------------------------ the centred start


def _response_tokens(arch: str, seed: int, rows: int = 16) -> list[torch.Tensor]:
    """Per layer, the tiny reference's hidden states of the response tokens of a batch, ``(N, d)``."""
    ref = tiny(arch, 1).float()
    batch = make_batch(seed, rows=rows, length=24)
    with torch.no_grad():
        hs = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    keep = batch["loss_mask"][:, 1:] > 0
    return [h[:, :-1][keep] for h in hs.hidden_states[1:]]


@pytest.mark.parametrize("depth", [1, 2])
def test_calibrate_standardises_each_layer_and_cuts_the_merge_at_the_asked_quantile(depth):
    """Against the statistics computed anew from the calibrated weights (not from calibrate's own numbers)."""
    torch.manual_seed(0)
    tokens = _response_tokens("llama", 0)
    net = LearnedMask(32, 2, depth=depth)
    net.calibrate(tokens, 0.3)
    with torch.no_grad():
        for f, h in zip(net.per_layer, tokens, strict=True):
            z = f(net.norm(h)).squeeze(-1)
            assert z.mean().item() == pytest.approx(0.0, abs=1e-4) and z.std().item() == pytest.approx(1.0, rel=1e-4)
        m = net(tokens)
    n = m.numel()
    assert abs((m == 0).sum().item() - 0.3 * n) <= 1  # the 30% quantile of the merged value sits at 0
    assert m[m > 0].mean().item() == pytest.approx(1.0, rel=1e-4)  # non-zero values average 1
    assert torch.allclose(net.merge.weight, net.merge.weight[0, 0].expand_as(net.merge.weight))  # layers weigh alike


@pytest.mark.parametrize("kind", ["learned", "binary"])
def test_centred_start_sparsity_is_the_option_not_the_seed(kind):
    """Five seeds: on held-out tokens the start is within 8 points of mask.init_sparsity (the paper start spreads
    over tens of points on SmolLM2: METHODS.md "Initialisation")."""
    cal, held = _response_tokens("gpt_neox", 0, rows=32), _response_tokens("gpt_neox", 7, rows=32)
    for seed in range(5):
        torch.manual_seed(seed)
        nets = build_mask_networks(MaskConfig(kind=kind, init_sparsity=0.6), 32, 2)
        for net in nets.values():
            net.calibrate(cal, 0.6)
            with torch.no_grad():
                sparsity = (net(held) == 0).float().mean().item()
            assert abs(sparsity - 0.6) < 0.08, (seed, sparsity)


def test_paper_start_keeps_the_merge_offset_at_zero_and_out_of_the_optimizer():
    nets = build_mask_networks(MaskConfig(init="paper"), 16, 3)
    params = {id(p) for g in decay_groups(nets, 0.01) for p in g["params"]}
    for net in nets.values():
        assert not net.merge.bias.requires_grad and not net.merge.bias.any() and id(net.merge.bias) not in params
    centred = build_mask_networks(MaskConfig(), 16, 3)
    assert all(net.merge.bias.requires_grad for net in centred.values())


def test_masks_saved_without_a_merge_offset_load_with_offset_zero():
    nets = build_mask_networks(MaskConfig(), 16, 3)
    state = {k: v for k, v in build_mask_networks(MaskConfig(), 16, 3).state_dict().items() if not k.endswith("merge.bias")}
    nets.load_state_dict(state)
    assert all(not net.merge.bias.any() for net in nets.values())


def test_mask_lr_is_the_mask_groups_own_rate():
    from sparsepo.config.schema import load_config
    from sparsepo.training.optim import build_optimizer

    cfg = load_config(None, ["method=sparsepo", "optim.lr=1e-4", "mask.lr=3e-3"])
    opt = build_optimizer(cfg, PreferenceModel(tiny("llama", 0).float(), "sparsepo", mask=cfg.mask))
    rates = {g["name"]: g["lr"] for g in opt.param_groups}
    assert rates == {"policy": 1e-4, "mask_decay": 3e-3, "mask_no_decay": 3e-3}
    cfg = load_config(None, ["method=sparsepo", "optim.lr=1e-4", "mask.lr=null"])  # the specification's: one rate
    opt = build_optimizer(cfg, PreferenceModel(tiny("llama", 0).float(), "sparsepo", mask=cfg.mask))
    assert {g["lr"] for g in opt.param_groups} == {1e-4}


def test_calibrate_masks_reads_only_response_tokens_of_the_reference():
    policy, ref = tiny("llama", 0).float(), tiny("llama", 1).float()
    model = PreferenceModel(policy, "sparsepo", mask=MaskConfig(init_sparsity=0.25))
    reference = Reference(ref, "sparsepo")
    batches = [make_batch(s, rows=8, length=20) for s in range(3)]
    n = model.calibrate_masks(batches, [reference(b) for b in batches])
    assert n == sum(int(b["loss_mask"][:, 1:].sum()) for b in batches)
    out = model(batches[0], reference(batches[0]))
    assert 0 < out.result.metrics["mask/reward/chosen/sparsity"].item() < 60
    paper = PreferenceModel(policy, "sparsepo", mask=MaskConfig(init="paper"))
    assert paper.calibrate_masks(batches, [reference(b) for b in batches]) == 0
