"""`sparsepo <command>`: help everywhere, and bad configs, paths, data and run names rejected before Ray starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsepo import cli
from sparsepo.training import train

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke" / "sparsepo.yaml")
TINY = ["model.name=tiny-llama", "data.path=offline:review-pairs", "data.limit=8", "data.max_length=48",
        "data.max_prompt_length=32", "optim.batch_size=2"]


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the command got as far as building a Ray trainer."""

    def refuse(*_, **__):
        raise AssertionError("Ray must not start for a bad configuration")

    monkeypatch.setattr(train, "make_trainer", refuse)


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["--help"])
    assert err.value.code == 0
    out = capsys.readouterr().out
    for name in cli.commands():
        assert f"  {name} " in out


def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as err:
        cli.main(["--version"])
    assert err.value.code == 0 and capsys.readouterr().out.strip() == f"sparsepo {version('sparsepo')}"


@pytest.mark.parametrize("name", list(cli.commands()))
def test_every_command_has_help_with_defaults(name, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main([name, "--help"])
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sparsepo {name}")


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["trian"])
    assert err.value.code == 2
    assert "invalid choice: 'trian'" in capsys.readouterr().err


def test_installed_console_script_runs():
    exe = Path(sys.executable).with_name("sparsepo")
    assert exe.exists(), "pip install -e . must install the `sparsepo` command"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "commands:" in proc.stdout


BAD = [
    (["mask.kind=banana"], "mask.kind: 'banana' is not one of 'learned', 'binary', 'random'"),
    (["loss.beta=-1"], "loss.beta: must be > 0, got -1.0 (method 'sparsepo')"),
    (["optim.lr=0"], "optim.lr: must be > 0, got 0.0"),
    (["mask.shaing=common"], "mask.shaing: unknown key (did you mean 'sharing'?)"),
    (["method=tdpo1", "loss={beta: 0.1}", "mask.kind=random"], "mask.kind: method 'tdpo1' has no mask; remove the key or change method"),
    (["method=simpo", "loss={beta: 2}", "mask.sharing=common"], "method 'simpo' has no mask"),
    (["method=mapo", "loss={beta: 0.1}", "mask.sharing=common"], "method 'mapo' takes mask.['mapo']"),
    (["method=dpoo"], "method: 'dpoo' is not one of"),
    (["optim.batch_size=0"], "optim.batch_size: must be >= 1, got 0"),
    (["model.dtype=fp32"], "model.dtype: 'fp32' is not one of 'float32'"),
]


@pytest.mark.parametrize("overrides, message", BAD)
def test_bad_config_fails_naming_file_and_key_without_ray(no_ray, capsys, overrides, message):
    assert cli.main(["train", "--config", SMOKE, *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one error, printed once
    assert err[-1].startswith(f"sparsepo: error: {SMOKE} + overrides: ")
    assert message in err[-1]


def test_missing_model_path_and_offline_hub_name_fail_before_ray(no_ray, capsys, tmp_path):
    assert cli.main(["train", *TINY, f"model.name={tmp_path / 'nope'}", f"run.storage_path={tmp_path}"]) == 2
    assert f"model path {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert cli.main(["train", *TINY, "model.name=someone/not-here", f"run.storage_path={tmp_path}"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'someone/not-here'" in last and "not a local folder or alias" in last


def test_bad_data_row_fails_before_ray_naming_file_row_and_field(no_ray, capsys, tmp_path):
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}] * 3 + [{"prompt": "p", "chosen": "a"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert cli.main(["train", *TINY, f"data.path={data}", f"run.storage_path={tmp_path}"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(data) in last and "'rejected'" in last and "missing" in last


def test_too_few_pairs_for_the_batch_fails_before_ray(no_ray, capsys, tmp_path):
    assert cli.main(["train", *TINY, "data.limit=3", "optim.batch_size=4", f"run.storage_path={tmp_path}"]) == 2
    assert "too few for batch_size=4" in capsys.readouterr().err


def test_existing_run_is_never_resumed_silently(no_ray, capsys, tmp_path):
    (tmp_path / "mine" / "checkpoint_000001").mkdir(parents=True)
    assert cli.main(["train", *TINY, "run.name=mine", f"run.storage_path={tmp_path}"]) == 2
    assert "a run named 'mine' already exists" in capsys.readouterr().err
    assert cli.main(["train", *TINY, "--resume", "other", f"run.storage_path={tmp_path}"]) == 2
    assert "there is no run 'other' to continue" in capsys.readouterr().err


def test_check_validates_everything_and_names_a_fresh_run(no_ray, capsys, tmp_path):
    assert cli.main(["train", "--check", "--config", SMOKE, *TINY, f"run.storage_path={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "check passed" in out and "sparsepo run sparsepo-" in out


def test_bad_config_subprocess_prints_one_line_and_starts_nothing(tmp_path):
    """As a user runs it: the installed module, its own process; Ray is not even imported."""
    code = ("import sys; from sparsepo.cli import main; rc = main(sys.argv[1:]); "
            "print('ray imported:', 'ray' in sys.modules); sys.exit(rc)")
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, "-c", code, "train", "--config", SMOKE, "mask.kind=banana"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"sparsepo: error: {SMOKE} + overrides: mask.kind: 'banana' is not one of 'learned', 'binary', 'random'"
    ]
    assert "ray imported: False" in proc.stdout


def test_check_reads_sft_rows_for_the_sft_objective(no_ray, capsys, tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) for i in range(4)) + "\n")
    args = ["train", "--check", "method=sft", "model.name=tiny-llama", f"data.path={data}", "optim.batch_size=2",
            f"run.storage_path={tmp_path}"]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert "check passed" in capsys.readouterr().out
