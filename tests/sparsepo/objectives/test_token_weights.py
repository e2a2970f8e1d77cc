"""The zoo: each token weighting and each zoo objective against a plain-Python, token-by-token re-derivation of
docs/METHODS.md "The zoo" (values and gradients), written without the library's tensor code."""

import math

import pytest
import torch

from sparsepo.objectives.losses import LOSSES, TokenStats, get_loss, preference_loss
from sparsepo.objectives.token_weights import WEIGHTINGS, token_weights
from tests.sparsepo.objectives.sides import random_side

B, T = 3, 7


def side(seed: int, oracle: bool = True, mask: bool = False) -> dict[str, torch.Tensor]:
    """A side with the oracle's log-probs (unless ``oracle=False``); ``mask``: with SparsePO's reward mask."""
    return random_side(seed, (B, T), oracle=oracle, reward_mask=mask)


def tokens(s: dict, b: int) -> list[int]:
    return [t for t in range(T) if s["mask"][b, t] > 0]


def v(s: dict, key: str, b: int, t: int) -> float:
    return float(s[key][b, t].detach())


def naive_weights(name: str, s: dict, chosen: bool, p: dict) -> list[list[float]]:
    """Per pair, per position: the weight METHODS.md gives (0 off the response)."""
    out = []
    for b in range(B):
        idx = tokens(s, b)
        rhat = {t: v(s, "oracle_logps", b, t) - v(s, "ref_logps", b, t) for t in idx}
        w = {}
        if name == "confidence":
            probs = {t: math.exp(v(s, "logps", b, t)) for t in idx}
            mean = sum(probs.values()) / len(idx)
            w = {t: 1.0 if probs[t] <= mean else 0.0 for t in idx}
        elif name == "importance":
            sgn = 1 if chosen else -1
            raw = {t: math.exp(sgn * p["mu"] * min(max(rhat[t], -p["clip"]), p["clip"])) for t in idx}
            k = len(idx) / sum(raw.values())
            w = {t: k * raw[t] for t in idx}
        elif name == "critical":
            w = {t: 1.0 if chosen else 2.0 / (1.0 + math.exp(rhat[t] / p["tau"])) for t in idx}
        elif name == "guidance":
            sgn = 1 if chosen else -1
            w = {t: max(0.0, 1.0 + sgn * p["alpha"] * rhat[t]) for t in idx}
        elif name == "selective":
            k = math.ceil(p["fraction"] * len(idx))
            ranked = sorted(idx, key=lambda t: (-rhat[t] if chosen else rhat[t], t))
            w = {t: 1.0 if t in ranked[:k] else 0.0 for t in idx}
        out.append([w.get(t, 0.0) for t in range(T)])
    return out


PARAMS = {"confidence": {}, "importance": {"mu": 0.8, "clip": 0.5}, "critical": {"tau": 0.7},
          "guidance": {"alpha": 0.6}, "selective": {"fraction": 0.4}}


def test_every_weighting_is_tested():
    assert set(WEIGHTINGS) == set(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("chosen", [True, False])
def test_weighting_matches_its_formula(name, chosen):
    s = side(3)
    got = token_weights(name, TokenStats(**s), chosen=chosen, **PARAMS[name])
    assert not got.requires_grad  # weights carry no gradient: only the objective's log-probs do
    torch.testing.assert_close(got, torch.tensor(naive_weights(name, s, chosen, PARAMS[name]), dtype=got.dtype))


def test_oracle_weightings_need_the_oracle():
    s = side(4, oracle=False)
    with pytest.raises(ValueError, match="oracle"):
        token_weights("importance", TokenStats(**s), chosen=True)


def nlsig(x: float | torch.Tensor) -> torch.Tensor:
    return -torch.log(1 / (1 + torch.exp(-torch.as_tensor(x))))


def naive_loss(method: str, c: dict, r: dict, hp: dict) -> torch.Tensor:
    """Per-pair losses token by token: objective(weights) with the weights of naive_weights (or the mask)."""
    spec = get_loss(method)
    wname = spec.weights
    wp = {k: hp[k] for k in (WEIGHTINGS[wname].defaults if wname else {})}
    ws = {}
    for key, s, chosen in (("w", c, True), ("l", r, False)):
        ws[key] = naive_weights(wname, s, chosen, wp) if wname else s["reward_mask"]
    base = spec.fn.__name__
    out = []

    def ratio(s, key, b):
        return sum(ws[key][b][t] * (s["logps"][b, t] - s["ref_logps"][b, t]) for t in tokens(s, b))

    def avg(s, key, b):
        den = sum(torch.as_tensor(ws[key][b][t], dtype=torch.float64) for t in tokens(s, b))
        return sum(ws[key][b][t] * s["logps"][b, t] for t in tokens(s, b)) / torch.clamp(den, min=1e-6)

    beta = hp["beta"]
    for b in range(B):
        if base == "dpo":
            out.append(nlsig(beta * (ratio(c, "w", b) - ratio(r, "l", b))))
        elif base == "simpo":
            out.append(nlsig(beta * (avg(c, "w", b) - avg(r, "l", b)) - hp["gamma"]))
        elif base == "dpop":
            dw, dl = ratio(c, "w", b), ratio(r, "l", b)
            out.append(nlsig(beta * (dw - dl - hp["lam"] * torch.clamp(-dw, min=0))))
        elif base == "ipo":
            out.append((ratio(c, "w", b) - ratio(r, "l", b) - 1 / (2 * beta)) ** 2)
    return torch.stack(out)


ZOO = ["confpo", "tisdpo", "cdpo", "tgdpo", "sepo", "ipo", "sparsepo_simpo", "sparsepo_dpop", "sparsepo_ipo"]


@pytest.mark.parametrize("method", ZOO)
def test_zoo_objective_matches_naive_values_and_gradients(method):
    masked = get_loss(method).mask == "learned" or method == "ipo"
    c, r = side(11, mask=masked), side(12, mask=masked)
    if method == "ipo":  # plain IPO: no weights at all
        for s in (c, r):
            s["reward_mask"] = torch.ones(B, T, dtype=torch.float64)
    hp = dict(get_loss(method).defaults)
    got = preference_loss(method, *(({k: x for k, x in s.items() if not (method == "ipo" and k == "reward_mask")})
                                     for s in (c, r)), **hp).losses
    leaves = [t for s in (c, r) for t in s.values() if t.requires_grad]
    want = naive_loss(method, c, r, hp)
    torch.testing.assert_close(got, want)
    g_got = torch.autograd.grad(got.sum(), leaves, allow_unused=True, retain_graph=True)
    g_want = torch.autograd.grad(want.sum(), leaves, allow_unused=True)
    for a, b in zip(g_got, g_want, strict=True):
        if a is None or b is None:
            assert (a is None or not a.abs().sum()) and (b is None or not b.abs().sum())
        else:
            torch.testing.assert_close(a, b)


def test_weighted_methods_log_their_weights_as_masks():
    c, r = side(5), side(6)
    m = preference_loss("sepo", c, r).metrics
    # SePO keeps ceil(0.3 |y|) tokens: the rest (exactly 0) is the sparsity the figures show
    n = [len(tokens(c, b)) for b in range(B)]
    want = sum(100 * (k - math.ceil(0.3 * k)) / k for k in n) / B
    assert m["mask/reward/chosen/sparsity"].item() == pytest.approx(want)


def test_zoo_registry_flags_what_each_method_needs():
    needs_oracle = {n for n, s in LOSSES.items() if s.needs_oracle}
    assert needs_oracle == {"tisdpo", "cdpo", "tgdpo", "sepo"}
    assert not get_loss("confpo").needs_reference
    assert {n for n, s in LOSSES.items() if s.mask == "learned"} == {"sparsepo", "sparsepo_simpo", "sparsepo_dpop",
                                                                    "sparsepo_ipo"}


def test_oracle_log_probs_in_a_training_step_are_the_oracle_models_own():
    """A TIS-DPO step on tiny models: the oracle's per-token log-probs equal its full log-softmax, gathered."""
    from sparsepo.training.preference_model import PreferenceModel, Reference
    from tests.sparsepo.training.test_forward import make_batch, tiny

    batch, oracle = make_batch(0, rows=4), tiny("llama", 2)
    ref = Reference(tiny("llama", 1), "tisdpo", oracle=oracle)
    out = PreferenceModel(tiny("llama", 0), "tisdpo")(batch, ref(batch))
    logits = oracle(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    want = logits.log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    where = batch["loss_mask"][:, 1:].bool()
    got = torch.cat([out.chosen.oracle_logps, out.rejected.oracle_logps])
    torch.testing.assert_close(got[where], want[where])
    assert out.result.metrics["mask/reward/chosen/mean"].item() == pytest.approx(1.0)  # TIS weights average 1


def test_oracle_methods_refuse_to_start_without_an_oracle():
    from sparsepo.training.preference_model import Reference
    from tests.sparsepo.training.test_forward import tiny

    with pytest.raises(ValueError, match="oracle"):
        Reference(tiny("llama", 1), "sepo")
