"""Loss hyper-parameters: typed per registered method, checked at config load, merged in one place."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sparsepo.config.schema import load_config
from sparsepo.config.typed import ConfigError
from sparsepo.objectives.losses import LOSSES, get_loss, loss_params, preference_loss
from sparsepo.training.preference_model import PreferenceModel

# loss_hparams(method, {}) of every method as main computed it before the typed parameters (commit adf6aa3),
# in its key order (a zoo weighting's parameters first).
RECORDED = {
    "dpo": {"beta": 0.1},
    "simpo": {"beta": 2.0, "gamma": 0.5},
    "dpop": {"beta": 0.1, "lam": 50.0},
    "ipo": {"beta": 0.1},
    "tdpo1": {"beta": 0.1},
    "tdpo2": {"beta": 0.1, "alpha": 0.5},
    "sparsepo": {"beta": 0.1, "l1_u": 0.0, "l1_d": 0.0},
    "mapo": {"beta": 0.1},
    "sft": {},
    "confpo": {"beta": 2.0, "gamma": 0.5},
    "tisdpo": {"mu": 1.0, "clip": 1.0, "beta": 0.1},
    "cdpo": {"tau": 1.0, "beta": 0.1},
    "tgdpo": {"alpha": 0.5, "beta": 0.1},
    "sepo": {"fraction": 0.3, "beta": 2.0, "gamma": 0.0},
    "sparsepo_simpo": {"beta": 2.0, "gamma": 0.5},
    "sparsepo_dpop": {"beta": 0.1, "lam": 50.0},
    "sparsepo_ipo": {"beta": 0.1},
}


def test_recorded_methods_are_still_registered():
    assert set(RECORDED) <= set(LOSSES)


@pytest.mark.parametrize("method", sorted(LOSSES))
def test_defaults_are_unchanged_and_typed(method):
    got = loss_params(method)
    if method in RECORDED:
        assert list(got.items()) == list(RECORDED[method].items())
    params = get_loss(method).params
    assert dataclasses.is_dataclass(params) and params.__dataclass_params__.frozen
    assert all(f.type is float for f in dataclasses.fields(params))
    assert get_loss(method).defaults == got and all(type(v) is float for v in got.values())


@pytest.mark.parametrize("method", sorted(LOSSES))
def test_every_place_merges_a_value_the_same_way(method, tmp_path):
    defaults = get_loss(method).defaults
    for key in defaults:
        # a YAML 1.1 string number, as the old loader took it: float, the other keys at their defaults
        want = {**defaults, key: 0.7}
        assert loss_params(method, {key: "7e-1"}) == want
        oracle = ["model.oracle=x"] if get_loss(method).needs_oracle else []
        cfg = load_config(None, [f"method={method}", f"loss.{key}=7e-1", *oracle])
        assert cfg.loss_hparams() == want and cfg.loss == {key: 0.7}  # typed at load: the float, not '7e-1'
        if get_loss(method).inputs == "pairs":
            model = PreferenceModel(torch.nn.Linear(1, 1), method, {key: 0.7}, ref_dims=(4, 2))
            assert model.hparams == want


def write(tmp_path, text: str):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    return f


@pytest.mark.parametrize(
    "text, message",
    [
        # unknown key: names the key and the method, suggests and lists the valid keys
        ("method: simpo\nloss: {gama: 1}", "c.yaml: loss.gama: method 'simpo' takes no 'gama' (did you mean 'gamma'?); "
                                           "it takes loss.beta, loss.gamma"),
        ("method: sft\nloss: {beta: 1}", "c.yaml: loss.beta: method 'sft' takes no 'beta'; it takes no loss.* key"),
        # wrong type: names the key and the method, lists the valid keys
        ("method: dpop\nloss: {lam: big}", "c.yaml: loss.lam: expected a number, got 'big' "
                                           "(method 'dpop' takes loss.beta, loss.lam)"),
        ("method: dpo\nloss: {beta: true}", "c.yaml: loss.beta: expected a number, got True (method 'dpo' takes loss.beta)"),
        # out of range / not finite
        ("method: dpo\nloss: {beta: 0}", "c.yaml: loss.beta: must be > 0, got 0.0 (method 'dpo')"),
        ("method: simpo\nloss: {beta: -2}", "c.yaml: loss.beta: must be > 0, got -2.0 (method 'simpo')"),
        ("method: tdpo2\nloss: {alpha: -0.1}", "c.yaml: loss.alpha: must be >= 0, got -0.1 (method 'tdpo2')"),
        ("method: sepo\nmodel: {oracle: x}\nloss: {fraction: .nan}", "c.yaml: loss.fraction: must be finite, got nan"),
    ],
)
def test_bad_hyper_parameter_is_refused_at_load_naming_the_key(tmp_path, text, message):
    f = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(err.value).startswith(f"{f}: {message.removeprefix('c.yaml: ')}")
    assert "\n" not in str(err.value)


def test_an_override_error_names_the_override_source(tmp_path):
    with pytest.raises(ConfigError, match=r"c.yaml \+ overrides: loss.beta: must be > 0, got -1.0 \(method 'dpo'\)$"):
        load_config(write(tmp_path, "method: dpo\n"), ["loss.beta=-1"])
    with pytest.raises(ConfigError, match=r"c.yaml: loss.beta: must be > 0, got -1.0 \(method 'dpo'\)$"):
        load_config(write(tmp_path, "method: dpo\nloss: {beta: -1}\n"), ["loss.beta=1"])  # the file's own error first


def test_library_callers_get_the_same_check():
    c = {"logps": torch.zeros(1, 2), "mask": torch.ones(1, 2), "ref_logps": torch.zeros(1, 2)}
    with pytest.raises(ConfigError, match=r"^loss.beta: must be > 0, got 0.0 \(method 'dpo'\)$"):
        preference_loss("dpo", c, dict(c), beta=0.0)
    with pytest.raises(ConfigError, match=r"^loss.gamma: method 'dpo' takes no 'gamma'"):
        PreferenceModel(torch.nn.Linear(1, 1), "dpo", {"gamma": 1.0})
