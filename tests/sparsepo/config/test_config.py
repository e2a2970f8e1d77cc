"""Config loading: YAML + key=value overrides, number coercion, and errors that name the file and key."""

import json
from pathlib import Path

import pytest
import yaml

from sparsepo.config.schema import as_number, from_dict, load_config, maybe_number, with_run_name
from sparsepo.objectives.losses import LOSSES

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "raw, expected",
    [("1e-3", 1e-3), ("5", 5), ("-2", -2), ("+.5", 0.5), ("3.", 3.0), ("1E4", 1e4), (" 7 ", 7),
     ("abc", "abc"), ("1e", "1e"), ("nan", "nan"), ("inf", "inf"), (True, True), ([1], [1]), (2.5, 2.5)],
)
def test_maybe_number_converts_only_strings_that_spell_a_number(raw, expected):
    got = maybe_number(raw)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("bad", [True, "x", None, [1.0], "1e"])
def test_as_number_rejects_non_numbers_and_names_where(bad):
    with pytest.raises(ValueError, match=r"optim\.lr: expected a number"):
        as_number(bad, "optim.lr")


def test_yaml_file_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    # YAML 1.1 reads 1e-3 (no dot) as a string, and 1e3 too: both must arrive as the numbers meant.
    f.write_text("method: sparsepo\noptim: {lr: 1e-3, max_steps: 1e3}\nloss: {beta: 1e-1}\n")
    cfg = load_config(f, ["optim.batch_size=8", "run.name=x", "mask.kind=random"])
    assert cfg.method == "sparsepo" and cfg.run.name == "x" and cfg.mask.kind == "random"
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.max_steps == 1000 and isinstance(cfg.optim.max_steps, int)
    assert cfg.optim.batch_size == 8
    assert cfg.loss_hparams()["beta"] == pytest.approx(0.1)
    assert load_config(None, []).method == "sparsepo"  # defaults without a file


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim: {lr: fast}", "c.yaml: optim.lr: expected a number, got 'fast'"),
        ("optim: {max_steps: 2.5}", "c.yaml: optim.max_steps: expected an integer, got 2.5"),
        ("optim: {bf16: maybe}", "c.yaml: optim.bf16: expected true or false"),
        ("optim: {lrr: 1}", "c.yaml: optim.lrr: unknown key (did you mean 'lr'?)"),
        ("optim: 3", "c.yaml: optim: expected a mapping of OptimConfig keys, got 3"),
        ("foo: 1", "c.yaml: foo: unknown key; known keys: method, loss, model"),
        ("- a\n- b", "c.yaml: top level must be a mapping, got list"),
        ("optim: {lr: [1, 2", "c.yaml: not valid YAML"),
        ("method: dpo\nloss: {l1_u: 0.1}", "c.yaml: loss.l1_u: method 'dpo' takes no 'l1_u'; it takes loss.beta"),
    ],
)
def test_bad_config_errors_name_the_file_and_key(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ValueError) as err:
        load_config(f)
    assert message in str(err.value)


def test_missing_config_file_and_malformed_override(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="not of the form key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ValueError, match="'method' is not a section"):
        load_config(None, ["method=dpo", "method.x=1"])


SHIPPED = sorted(p.relative_to(REPO).as_posix() for p in [*REPO.glob("configs/*.yaml"), *REPO.glob("configs/smoke/*.yaml")])


@pytest.mark.parametrize("path", SHIPPED)
def test_every_shipped_config_loads_and_names_a_registered_method(path):
    cfg = load_config(REPO / path)
    assert cfg.method in LOSSES  # and the method's hyper-parameters resolve (sft has none):
    assert set(cfg.loss_hparams()) == set(LOSSES[cfg.method].defaults)
    assert cfg.optim.lr > 0
    # no shipped config pins a run name: rerunning one starts a fresh run instead of resuming an old one
    assert cfg.run.name is None and with_run_name(cfg).run.name.startswith(f"{cfg.method}-")


def test_every_shipped_config_and_method_is_there():
    # One full and one smoke config per registered method (sparsepo also has a common-mask variant).
    for method in LOSSES:
        assert f"configs/{method}.yaml" in SHIPPED and f"configs/smoke/{method}.yaml" in SHIPPED, method


# What every shipped config loaded to on main before its lines equal to TrainConfig's defaults were cut (commit
# adf6aa3): for each file, its full TrainConfig.to_dict() flattened to dotted keys, stored as the values most files
# share ("common") plus each file's own differences.
RECORDED = json.loads((Path(__file__).with_name("shipped_configs.json")).read_text())


def flat(values: dict, prefix: str = "") -> dict:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``; dict-valued fields (``loss``, ``run.evaluator_args``) stay whole."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict) and k not in ("loss", "evaluator_args"):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("path", sorted(RECORDED["configs"]))
def test_every_shipped_config_loads_to_what_it_loaded_to_on_main(path):
    # Neither a cut line nor a later change of a TrainConfig default may change what a shipped config trains.
    want = {**RECORDED["common"], **RECORDED["configs"][path]}
    got = json.loads(json.dumps(flat(load_config(REPO / path).to_dict())))  # tuples as the JSON lists recorded
    assert {k: got.get(k, "<missing>") for k in want} == want


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_hold_only_what_differs_from_the_defaults(path):
    # `loss:` stays whole: a sweep that switches method keeps the base's loss keys the new method takes.
    text = (REPO / path).read_text()
    assert text.startswith("# "), "each config opens with a comment saying what it is"
    given = flat({k: v for k, v in yaml.safe_load(text).items() if k not in ("method", "loss")})
    defaults = flat(from_dict({}).to_dict())
    for key, value in given.items():
        section, _, name = key.partition(".")
        parsed = flat(from_dict({section: {name: value}}).to_dict())[key]  # 2.0e-5 and 2e-5 alike
        assert parsed != defaults[key], f"{path}: {key}: {value!r} is the default; remove it"
