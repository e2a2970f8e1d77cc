"""evals/run.py's library side: default system names (one output folder per checkpoint) and sampling settings.

The refusals of bad settings are in test_settings.py."""

from __future__ import annotations

import shutil

import pytest

from sparsepo.evaluation import cli
from sparsepo.evaluation.cli import default_system_name


def test_checkpoints_get_distinct_readable_names(tmp_path):
    trial = tmp_path / "runs" / "sweep" / "TorchTrainer_3f2a1_00004"
    for step in ("checkpoint_000012", "checkpoint_000024"):
        (trial / step / "policy").mkdir(parents=True)
    names = {default_system_name(str(trial / s / "policy")) for s in ("checkpoint_000012", "checkpoint_000024")}
    assert names == {"TorchTrainer_3f2a1_00004-checkpoint_000012", "TorchTrainer_3f2a1_00004-checkpoint_000024"}
    assert default_system_name(str(trial / "checkpoint_000012")) == "TorchTrainer_3f2a1_00004-checkpoint_000012"
    assert default_system_name(str(trial / "checkpoint_000012" / "policy") + "/") == (
        "TorchTrainer_3f2a1_00004-checkpoint_000012"
    )


def test_aliases_folders_and_hub_names(tmp_path, monkeypatch):
    assert default_system_name("tiny-llama") == "tiny-llama"
    (tmp_path / "my-sft" / "policy").mkdir(parents=True)
    assert default_system_name(str(tmp_path / "my-sft")) == "my-sft"
    assert default_system_name(str(tmp_path / "my-sft" / "policy")) == "my-sft"
    monkeypatch.chdir(tmp_path / "my-sft")
    assert default_system_name("./policy") == "my-sft"
    assert default_system_name("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB-SmolLM2-135M-Instruct"


class _Ran(BaseException):  # not an Exception: the CLI turns those into an exit status
    pass


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Run cli.main up to the suite runner and record the arguments and output folder it would get."""
    seen: dict = {}

    def fake(a, out):
        seen.update(top_p=a.top_p, system=a.system, out=out)
        raise _Ran

    monkeypatch.setattr(cli, "RUNNERS", {s: fake for s in cli.SUITES})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"document": "a long text", "summary": "a text"}\n')
    return seen


@pytest.mark.parametrize(
    ("suite", "args", "top_p"),
    [
        ("summarization", ["--data", "d.jsonl", "--top-p", "1.0"], 1.0),  # was silently replaced by 0.5
        ("summarization", ["--data", "d.jsonl", "--top-p", "0.9"], 0.9),
        ("summarization", ["--data", "d.jsonl"], 0.5),
        ("sentiment", [], 1.0),
        ("code", ["--top-p", "0.95", "--ks", "1"], 0.95),
    ],
)
def test_top_p_is_used_as_given(captured, suite, args, top_p):
    with pytest.raises(_Ran):
        cli.main(["--suite", suite, "--model", "tiny-llama", *args])
    assert captured["top_p"] == top_p


def test_default_output_folder_is_named_after_the_checkpoint(captured, tmp_path):
    from sparsepo.assets import resolve_model

    policy = tmp_path / "runs" / "trial_a" / "checkpoint_000003" / "policy"
    shutil.copytree(resolve_model("tiny-llama"), policy)  # a real model folder: the settings check resolves it
    with pytest.raises(_Ran):
        cli.main(["--suite", "sentiment", "--model", str(policy)])
    assert captured["system"] == "trial_a-checkpoint_000003"
    assert captured["out"].as_posix() == "runs/evals/sentiment/trial_a-checkpoint_000003"


def test_argument_errors_are_one_error_line_before_any_output_folder(tmp_path, capsys):
    from sparsepo.cli import main

    out = tmp_path / "out"
    assert main(["eval", "--suite", "summarization", "--model", "tiny-llama", "--out", str(out)]) == 2
    assert "sparsepo: error: --suite summarization needs --data" in capsys.readouterr().err and not out.exists()
    assert main(["eval", "--suite", "sentiment", "--model", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "--model " in capsys.readouterr().err and not out.exists()
    assert main(["eval", "--compare", str(tmp_path / "missing")]) == 2
    assert "--compare " + str(tmp_path / "missing") + ": no such file or folder" in capsys.readouterr().err
