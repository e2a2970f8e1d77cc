"""``sparsepo <experiment> --check``: every experiment validates its settings, models and training overrides and
runs nothing; the same check runs before the first stage of a real run."""

from __future__ import annotations

import pytest

from sparsepo.cli import main
from sparsepo.experiments import EXPERIMENTS


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_check_passes_on_the_offline_default_and_writes_nothing(name, tmp_path, capsys):
    assert main([name, "--check", "--model", "tiny-llama", "--storage-path", str(tmp_path / "runs")]) == 0
    assert "check passed" in capsys.readouterr().out and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
@pytest.mark.parametrize("bad, named", [(["--model", "/no/such/model"], "/no/such/model"),
                                        (["--model", "tiny-llama", "optim.lr=-1"], "optim.lr"),
                                        (["--model", "tiny-llama", "--methods", "nope"], "nope")])
def test_a_bad_model_override_or_method_is_refused_before_any_stage(name, bad, named, tmp_path, capsys):
    assert main([name, *bad, "--storage-path", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsepo: error:") and named in err and not (tmp_path / "runs").exists()


def config_class(name: str) -> type:
    from sparsepo.experiments.command import load

    return load(EXPERIMENTS[name].config)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_configs_are_frozen(name):
    import dataclasses

    cfg = config_class(name)()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "changed"  # stages change settings with dataclasses.replace, never in place


@pytest.mark.parametrize("name, flag, choices", [
    ("frontier", "--eval-mode", "{inline,checkpoints}"), ("frontier", "--eval-backend", "{hf,vllm}"),
    ("dialogue", "--prompt-format", "{chat,hh}"), ("dialogue", "--eval-suite", "{local_toy,open_llm_v2}"),
    ("dialogue", "--eval-backend", "{hf,vllm}"), ("summarization", "--lora-quantize", "{none,nf4,fp4}"),
])
def test_choice_settings_list_their_choices_and_refuse_others(name, flag, choices, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    assert f"{flag} {choices}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main([name, flag, "nope"])
    assert err.value.code == 2 and f"argument {flag}: invalid choice: 'nope'" in capsys.readouterr().err


def test_choice_types_match_what_runs_them():
    # The Literal types repeat names that live beside the code that uses them (which --help must not import).
    import typing

    from sparsepo.evaluation import openllm, openllm_scores
    from sparsepo.experiments.dialogue.experiment import DialogueConfig
    from sparsepo.experiments.sentiment.frontier import FrontierConfig
    from sparsepo.generation import available_backends

    dialogue, frontier = typing.get_type_hints(DialogueConfig), typing.get_type_hints(FrontierConfig)
    assert set(typing.get_args(dialogue["eval_suite"])) == set(openllm_scores.SUITES)
    assert set(typing.get_args(dialogue["eval_backend"])) == set(typing.get_args(openllm.Backend))
    assert set(typing.get_args(frontier["eval_backend"])) <= set(available_backends())


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_help_shows_the_run_name_a_command_really_uses(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default: {name}-<date>-<time>" in text
