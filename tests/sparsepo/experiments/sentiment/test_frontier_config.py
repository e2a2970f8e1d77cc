"""The frontier refuses every bad setting at once, when its config is built: before pairs, Ray or a model."""

import pytest

from sparsepo.experiments.sentiment.frontier import FrontierConfig


def test_every_bad_setting_is_named_in_one_error():
    with pytest.raises(ValueError) as err:
        FrontierConfig(methods=("foo", "dpo,sparsepo"), betas=(-1.0,), n_test_prompts=0, lr=-1.0, batch_size=0,
                       reward="banana", max_length=8, max_prompt_length=12, temperature=0.0)
    text = str(err.value)
    for part in ("'foo' is not a registered method", "separate values: --methods dpo sparsepo", "betas: -1.0 is not > 0",
                 "n_test_prompts must be >= 2, got 0", "lr must be > 0, got -1.0", "batch_size must be >= 1, got 0",
                 "reward: 'banana' is not one of", "max_length (8) must exceed max_prompt_length (12)",
                 "temperature must be > 0"):
        assert part in text, part


def test_the_defaults_and_the_paper_preset_are_valid():
    from sparsepo.experiments.sentiment.frontier import paper_config

    paper_config(FrontierConfig())


def test_the_command_refuses_before_any_stage_runs(tmp_path, capsys):
    from sparsepo.cli import main

    code = main(["frontier", "--methods", "foo", "--betas", "-1", "--n-test-prompts", "0",
                 "--storage-path", str(tmp_path / "runs")])
    assert code != 0
    err = capsys.readouterr().err
    assert err.startswith("sparsepo: error: FrontierConfig: ") and "'foo'" in err and "n_test_prompts" in err
    assert not (tmp_path / "runs").exists()  # no pairs sampled, nothing written
