"""``sparsepo sweep`` settings: flags from a frozen dataclass, and every bad setting refused, in one line, before
Ray starts or a model loads (the settings' own checks before torch is imported)."""

from __future__ import annotations

import pytest

from sparsepo.config.typed import ConfigError
from sparsepo.sweeps.sweep import SweepSettings, build_parser, settings_from_args
from tests.sparsepo.refusals import refuse

BASE = ("--config", "configs/smoke/sparsepo.yaml", "--space", "tune/spaces/beta.yaml", "--metric", "loss")

# argv -> the last stderr line; all answered by argparse or SweepSettings, so before torch loads.
SETTINGS = {
    "num-samples": (["--num-samples", "0"], "sparsepo: error: flags: num_samples: must be >= 1, got 0"),
    "num-samples-text": (["--num-samples", "x"], "sparsepo: error: flags: num_samples: expected a number, got 'x'"),
    "grace-period": (["--scheduler", "asha", "--grace-period", "0"],
                     "sparsepo: error: flags: grace_period: must be >= 1, got 0"),
    "max-concurrent": (["--max-concurrent-trials", "0"],
                       "sparsepo: error: flags: max_concurrent_trials: must be >= 1, got 0"),
    "driver-cpus": (["--driver-cpus", "0"], "sparsepo: error: flags: driver_cpus: must be > 0, got 0.0"),
    "num-cpus": (["--num-cpus", "0"], "sparsepo: error: flags: num_cpus: must be >= 1, got 0"),
    "search": (["--search", "grdi"],
               "sparsepo sweep: error: argument --search: invalid choice: 'grdi' (choose from 'grid', 'random', 'optuna')"),
    "mode": (["--mode", "maximum"],
             "sparsepo: error: flags: mode[0]: 'maximum' is not one of 'min', 'max' (did you mean 'max'?)"),
    "scheduler": (["--scheduler", "hyperband"],
                  "sparsepo sweep: error: argument --scheduler: invalid choice: 'hyperband' (choose from 'asha')"),
    "modes-per-metric": (["--metric", "loss", "rewards/accuracy", "--mode", "min"],
                         "sparsepo: error: --mode: one mode per --metric (2 metrics, 1 modes)"),
    "multi-needs-optuna": (["--metric", "loss", "rewards/accuracy", "--mode", "min", "max"],
                           "sparsepo: error: --metric: several metrics (multi-objective) need --search optuna and no "
                           "--scheduler"),
    "grace-without-asha": (["--grace-period", "2"],
                           "sparsepo: error: --grace-period: only with --scheduler asha (it delays early stopping)"),
    "resume-without-name": (["--resume"], "sparsepo: error: --resume needs the --name of the experiment to continue"),
    "config-missing": (["--config", "configs/smoke/nope.yaml"],
                       "sparsepo: error: --config: file not found: configs/smoke/nope.yaml"),
    "space-missing": (["--space", "tune/spaces/nope.yaml"],
                      "sparsepo: error: --space: file not found: tune/spaces/nope.yaml"),
    "override-after-metric": (["--metric", "loss", "optim.lr=1e-5"],
                              "sparsepo: error: --metric 'optim.lr=1e-5': looks like a config override; put overrides "
                              "before --metric"),
}


def test_override_not_key_value_is_refused_before_torch():
    got = refuse("sweep", "optim.lr", *BASE)  # before BASE: --metric would take it as a second metric
    error = "sparsepo: error: override 'optim.lr' is not of the form key=value (e.g. optim.lr=1e-5)"
    assert (got.code, got.error, got.heavy) == (2, error, [])


@pytest.mark.parametrize("case", list(SETTINGS))
def test_bad_setting_is_refused_before_torch(case):
    argv, error = SETTINGS[case]
    got = refuse("sweep", *BASE, *argv)  # later flags win over BASE's
    assert (got.code, got.error, got.heavy) == (2, error, [])


def test_missing_space_is_refused_before_torch():
    got = refuse("sweep", "--config", "configs/smoke/sparsepo.yaml")
    assert (got.code, got.error, got.heavy) == (2, "sparsepo: error: --space: a search space is required (unless --resume)", [])


# Settings that need the base config (TrainConfig: torch loads) but no model and no Ray.
def test_bad_override_key_is_refused_before_ray():
    got = refuse("sweep", "optim.lrr=1e-5", *BASE)
    assert got.code == 2 and "optim.lrr: unknown key (did you mean 'lr'?)" in got.error
    assert "ray" not in got.heavy and "transformers" not in got.heavy


def test_eval_metric_without_an_evaluator_is_refused_before_ray():
    got = refuse("sweep", *BASE, "--metric", "eval/reward")
    assert got.code == 2 and got.error.startswith("sparsepo: error: --metric eval/reward: trials are ranked by an ")
    assert "ray" not in got.heavy and "transformers" not in got.heavy


def test_bad_space_key_is_refused_before_ray(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lrr: {grid: [1.0e-5, 2.0e-5]}\n")
    got = refuse("sweep", *BASE, "--space", str(space))
    assert got.code == 2 and "key 'optim.lrr': unknown config key 'optim.lrr'; optim keys: [" in got.error
    assert "ray" not in got.heavy and "transformers" not in got.heavy


def settings(*argv: str) -> SweepSettings:
    from sparsepo.cli import parse

    return settings_from_args(parse(build_parser(), list(argv)))


def test_flags_keep_their_names_and_defaults():
    got = settings("--space", "tune/spaces/beta.yaml", "model.name=tiny-llama", "--no-tensorboard", "--num-cpus", "4",
                   "optim.max_steps=4", "--metric", "loss", "--mode", "min")  # fmt: skip
    assert got == SweepSettings(space="tune/spaces/beta.yaml", metric=("loss",), mode=("min",), tensorboard=False,
                                num_cpus=4, overrides=("model.name=tiny-llama", "optim.max_steps=4"))  # fmt: skip
    assert settings("--space", "tune/spaces/beta.yaml").tensorboard is True
    assert settings("--resume", "--name", "exp").space is None  # no space needed to continue


def test_settings_are_frozen_and_checked_when_built_in_python():
    s = SweepSettings(space="tune/spaces/beta.yaml")
    with pytest.raises(AttributeError):
        s.num_samples = 2  # type: ignore[misc]
    with pytest.raises(ConfigError, match="one mode per --metric"):
        SweepSettings(space="tune/spaces/beta.yaml", metric=("a", "b"))


def test_help_lists_choices_and_defaults():
    text = " ".join(build_parser().format_help().split())
    assert "--search {grid,random,optuna}" in text and "--mode {min,max} [{min,max} ...]" in text
    assert "--scheduler {asha}" in text and "--tensorboard, --no-tensorboard" in text
    assert "--num-samples NUM_SAMPLES grid: repeats of the grid; else: trials [int; default: 1]" in text
