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
