"""Each objective against a naive per-pair, per-token re-derivation of METHODS.md (values and gradients)."""

import math

import pytest
import torch

from sparsepo.objectives.losses import LOSSES, TokenStats, get_loss, preference_loss
from tests.sparsepo.objectives import sides

B, T = 3, 6


def random_side(seed: int, masks: bool = False, kl_mask: bool = True) -> dict[str, torch.Tensor]:
    """A side with token KL; ``masks``: with SparsePO's reward mask, and its KL mask unless ``kl_mask=False``."""
    return sides.random_side(seed, (B, T), kl=True, reward_mask=masks, kl_mask=masks and kl_mask)


def nlsig(x: torch.Tensor) -> torch.Tensor:
    return -torch.log(1 / (1 + torch.exp(-x)))


def _sum(side, key, b, weight=None):
    """sum over response tokens of side[key] (optionally times side[weight]) for pair b, token by token."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(T):
        if side["mask"][b, i] > 0:
            total = total + (side[key][b, i] if weight is None else side[weight][b, i] * side[key][b, i])
    return total


def _ratio_sum(side, b, weight=None):
    total = torch.zeros((), dtype=torch.float64)
    for i in range(T):
        if side["mask"][b, i] > 0:
            w = 1.0 if weight is None else side[weight][b, i]
            total = total + w * (side["logps"][b, i] - side["ref_logps"][b, i])
    return total


def _l1(side, key, b):
    return sum(abs(side[key][b, i]) for i in range(T) if side["mask"][b, i] > 0)


def naive(method: str, c: dict, r: dict, hp: dict) -> torch.Tensor:
    """Per-pair losses written out token by token, straight from METHODS.md."""
    out = []
    beta = hp["beta"]
    for b in range(B):
        if method == "dpo":
            z = beta * ((_sum(c, "logps", b) - _sum(c, "ref_logps", b)) - (_sum(r, "logps", b) - _sum(r, "ref_logps", b)))
            out.append(nlsig(z))
        elif method == "simpo":
            z = beta * (_sum(c, "logps", b) / c["mask"][b].sum() - _sum(r, "logps", b) / r["mask"][b].sum()) - hp["gamma"]
            out.append(nlsig(z))
        elif method == "dpop":
            dw = _sum(c, "logps", b) - _sum(c, "ref_logps", b)
            dl = _sum(r, "logps", b) - _sum(r, "ref_logps", b)
            pen = hp["lam"] * torch.clamp(_sum(c, "ref_logps", b) - _sum(c, "logps", b), min=0)
            out.append(nlsig(beta * (dw - dl - pen)))
        elif method == "tdpo1":
            out.append(nlsig(beta * ((_ratio_sum(c, b) - _ratio_sum(r, b)) - (_sum(r, "kl", b) - _sum(c, "kl", b)))))
        elif method == "tdpo2":
            kl_c = _sum(c, "kl", b).detach()
            out.append(nlsig(beta * ((_ratio_sum(c, b) - _ratio_sum(r, b)) - hp["alpha"] * (_sum(r, "kl", b) - kl_c))))
        elif method in ("sparsepo", "mapo"):
            common = "kl_mask" not in c
            km = "reward_mask" if common else "kl_mask"
            U = _ratio_sum(c, b, "reward_mask") - _ratio_sum(r, b, "reward_mask")
            D = _sum(r, "kl", b, km) - _sum(c, "kl", b, km)
            loss = nlsig(beta * (U - D))
            l1u, l1d = hp.get("l1_u", 0.0), hp.get("l1_d", 0.0)
            if common:
                loss = loss + (l1u + l1d) / 2 * (_l1(c, "reward_mask", b) + _l1(r, "reward_mask", b))
            else:
                loss = loss + l1u * (_l1(c, "reward_mask", b) + _l1(r, "reward_mask", b))
                loss = loss + l1d * (_l1(c, "kl_mask", b) + _l1(r, "kl_mask", b))
            out.append(loss)
    return torch.stack(out)


CASES = [
    ("dpo", {"beta": 0.3}, False, True),
    ("simpo", {"beta": 2.0, "gamma": 0.5}, False, True),
    ("dpop", {"beta": 0.1, "lam": 50.0}, False, True),
    ("tdpo1", {"beta": 0.4}, False, True),
    ("tdpo2", {"beta": 0.4, "alpha": 0.5}, False, True),
    ("sparsepo", {"beta": 0.5, "l1_u": 0.01, "l1_d": 0.02}, True, True),
    ("sparsepo", {"beta": 0.5, "l1_u": 0.01, "l1_d": 0.03}, True, False),
    ("mapo", {"beta": 0.7}, True, False),
]


@pytest.mark.parametrize("method,hp,masks,kl_mask", CASES)
def test_objective_matches_naive_values_and_gradients(method, hp, masks, kl_mask):
    c, r = random_side(1, masks, kl_mask), random_side(2, masks, kl_mask)
    got = preference_loss(method, c, r, **hp).losses
    leaves = [t for side in (c, r) for k, t in side.items() if k != "mask"]
    g_got = torch.autograd.grad(got.sum(), leaves, allow_unused=True)
    want = naive(method, c, r, {**get_loss(method).defaults, **hp})
    g_want = torch.autograd.grad(want.sum(), leaves, allow_unused=True)
    torch.testing.assert_close(got, want)
    for a, b in zip(g_got, g_want, strict=True):
        if a is None or b is None:
            assert (a is None or not a.abs().sum()) and (b is None or not b.abs().sum())
        else:
            torch.testing.assert_close(a, b)


def test_dpop_penalty_active_only_when_policy_below_reference():
    c, r = random_side(3), random_side(4)
    with torch.no_grad():
        c["logps"].copy_(c["ref_logps"] + 0.1)  # policy above reference on chosen: no penalty
    assert torch.allclose(preference_loss("dpop", c, r, lam=50.0).losses, preference_loss("dpo", c, r).losses)
    with torch.no_grad():
        c["logps"].copy_(c["ref_logps"] - 0.1)
    assert (preference_loss("dpop", c, r, lam=50.0).losses > preference_loss("dpo", c, r).losses).all()


def test_tdpo2_stops_gradient_through_chosen_kl():
    c, r = random_side(5), random_side(6)
    loss = preference_loss("tdpo2", c, r).loss
    g_ckl, g_rkl = torch.autograd.grad(loss, [c["kl"], r["kl"]], allow_unused=True)
    assert g_ckl is None and g_rkl.abs().sum() > 0
    g_ckl1 = torch.autograd.grad(preference_loss("tdpo1", c, r).loss, c["kl"])[0]
    assert g_ckl1.abs().sum() > 0


def test_sparsepo_with_unit_masks_is_tdpo1_exactly():
    c, r = random_side(7), random_side(8)
    ones = {k: torch.ones(B, T, dtype=torch.float64) for k in ("reward_mask", "kl_mask")}
    sp = preference_loss("sparsepo", {**c, **ones}, {**r, **ones}, beta=0.3, l1_u=0.0, l1_d=0.0)
    td = preference_loss("tdpo1", c, r, beta=0.3)
    assert torch.equal(sp.losses, td.losses)
    nomask = preference_loss("sparsepo", c, r, beta=0.3)  # absent masks mean all-ones
    assert torch.equal(nomask.losses, td.losses)


def test_mask_metrics_count_exact_zeros_on_response_tokens_only():
    c, r = random_side(9, masks=True), random_side(10, masks=True)
    with torch.no_grad():
        c["reward_mask"].fill_(1.0)
        c["reward_mask"][2, :3] = 0.0  # row 2 has 6 response tokens: 50% zero
        c["reward_mask"][0, :2] = 0.0  # prompt positions of row 0: must not count
    m = preference_loss("sparsepo", c, r).metrics
    assert m["mask/reward/chosen/sparsity"].item() == pytest.approx(100 * (0 + 0 + 0.5) / 3)
    assert m["mask/reward/chosen/l1"].item() == pytest.approx((4 + 4 + 3) / 3)


def test_metrics_and_rewards():
    c, r = random_side(11), random_side(12)
    out = preference_loss("dpo", c, r, beta=0.2)
    rw = 0.2 * ((c["logps"] - c["ref_logps"]) * c["mask"]).sum(-1)
    rl = 0.2 * ((r["logps"] - r["ref_logps"]) * r["mask"]).sum(-1)
    torch.testing.assert_close(out.chosen_rewards, rw)
    assert out.metrics["rewards/accuracy"].item() == pytest.approx(((rw - rl) > 0).double().mean().item())
    assert out.metrics["kl/chosen"].item() == pytest.approx((c["kl"] * c["mask"]).sum(-1).mean().item())
    assert out.loss.item() == pytest.approx(-torch.nn.functional.logsigmoid(rw - rl).mean().item())


def test_simpo_needs_no_reference_tensors():
    c, r = random_side(13), random_side(14)
    for side in (c, r):
        side.pop("ref_logps"), side.pop("kl")
    out = preference_loss("simpo", c, r)
    assert math.isfinite(out.loss.item())
    assert not get_loss("simpo").needs_reference


def test_errors_name_the_problem():
    c, r = random_side(15), random_side(16)
    with pytest.raises(KeyError, match="unknown method"):
        preference_loss("nope", c, r)
    with pytest.raises(ValueError, match="loss.gamma: method 'dpo' takes no 'gamma'; it takes loss.beta"):
        preference_loss("dpo", c, r, gamma=1.0)  # the config loader's check (sparsepo.objectives.loss_params)
    c.pop("kl")
    with pytest.raises(ValueError, match="kl"):
        preference_loss("tdpo1", c, r)
    with pytest.raises(KeyError, match="unknown token-stat"):
        TokenStats.coerce({"logps": c["logps"], "mask": c["mask"], "bogus": c["mask"]})


def test_registry_lists_every_method():
    assert set(LOSSES) == {"dpo", "simpo", "dpop", "ipo", "tdpo1", "tdpo2", "sparsepo", "mapo", "sft", "confpo",
                           "tisdpo", "cdpo", "tgdpo", "sepo", "sparsepo_simpo", "sparsepo_dpop", "sparsepo_ipo"}
    assert {n for n, s in LOSSES.items() if s.inputs == "sequences"} == {"sft"}


def test_sequence_objective_is_not_a_pair_loss():
    c, r = random_side(1), random_side(2)
    with pytest.raises(ValueError, match="single sequences"):
        preference_loss("sft", c, r)


@pytest.mark.parametrize("method", ["sparsepo", "mapo", "tdpo1", "tdpo2"])
def test_token_level_rewards_hold_the_kl_term_and_rewards_u_the_ratio_term(method):
    """rewards/* = each side's whole term of the Bradley-Terry logit (beta * (U + a * D)); rewards_u/* = beta * U."""
    masked = method in ("sparsepo", "mapo")
    c, r = (random_side(s, masks=masked, kl_mask=method == "sparsepo") for s in (33, 34))
    with torch.no_grad():
        r["kl"].mul_(8.0)  # a KL term large enough to flip some margins' sign
    hp = {"beta": 0.3, **({"alpha": 0.7} if method == "tdpo2" else {})}
    out = preference_loss(method, c, r, **hp)
    a = hp.get("alpha", 1.0)
    mu = "reward_mask" if masked else None
    md = ("kl_mask" if method == "sparsepo" else "reward_mask") if masked else None
    u = {s: torch.stack([_ratio_sum(side, b, mu) for b in range(B)]) for s, side in (("w", c), ("l", r))}
    d = {s: torch.stack([_sum(side, "kl", b, md) for b in range(B)]) for s, side in (("w", c), ("l", r))}
    full = {s: 0.3 * (u[s] + a * d[s]) for s in "wl"}
    ratio = {s: 0.3 * u[s] for s in "wl"}
    torch.testing.assert_close(out.losses, nlsig(full["w"] - full["l"]))  # the logged margin is the loss's logit
    torch.testing.assert_close(out.chosen_rewards, full["w"])
    for prefix, want in (("rewards", full), ("rewards_u", ratio)):
        m = {k: out.metrics[f"{prefix}/{k}"].item() for k in ("chosen", "rejected", "margin", "accuracy")}
        assert m["chosen"] == pytest.approx(want["w"].mean().item())
        assert m["rejected"] == pytest.approx(want["l"].mean().item())
        assert m["margin"] == pytest.approx((want["w"] - want["l"]).mean().item())
        assert m["accuracy"] == pytest.approx(((want["w"] - want["l"]) > 0).double().mean().item())
    assert out.metrics["rewards/accuracy"] != out.metrics["rewards_u/accuracy"]


def test_sequence_level_methods_log_no_rewards_u():
    c, r = random_side(33), random_side(34)
    for method in ("dpo", "dpop", "simpo"):
        assert not any(k.startswith("rewards_u/") for k in preference_loss(method, c, r).metrics)
