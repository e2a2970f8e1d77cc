"""``sparsepo assets``: the asset names listed in ``--help``, and an unknown one refused with a did-you-mean before
anything is prepared (the cache folder is not even created) or any heavy library loads."""

from __future__ import annotations

import pytest

from sparsepo import assets
from tests.sparsepo.refusals import refuse

CASES = {
    "path-typo": (["path", "smolm2"], "'smolm2' (did you mean 'smollm2'?); choose from smollm2, pang-lee, humaneval, "
                                      "punkt, nli-standin, tiny-gpt2, tiny-llama, tiny-gpt_neox"),
    "path-tiny": (["path", "tiny"], "'tiny' (did you mean 'tiny-gpt2'?); choose from smollm2,"),
    "prepare-typo": (["prepare", "--only", "pang-lee", "humanevl"],
                     "'humanevl' (did you mean 'humaneval'?); choose from smollm2, pang-lee, humaneval, punkt, "
                     "nli-standin, tiny"),
    "prepare-unknown": (["prepare", "--only", "imdb"], "'imdb'; choose from smollm2, pang-lee, humaneval, punkt, "),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unknown_name_is_refused_before_anything_is_prepared(case, tmp_path):
    argv, error = CASES[case]
    got = refuse("assets", *argv, "--cache-dir", str(tmp_path / "cache"))
    assert got.code == 2 and got.error.startswith(f"sparsepo: error: unknown asset {error}")
    assert got.heavy == [] and not (tmp_path / "cache").exists()


def test_help_lists_the_names(capsys):
    for action, names in (("prepare", assets.ASSET_NAMES), ("path", assets.PATH_NAMES)):
        with pytest.raises(SystemExit):
            assets.build_parser().parse_args([action, "--help"])
        text = "".join(capsys.readouterr().out.split())
        assert "{" + ",".join(names) + "}" in text


def test_library_functions_suggest_too():
    with pytest.raises(ValueError, match=r"unknown asset 'punk' \(did you mean 'punkt'\?\)"):
        assets.asset_path("punk")
