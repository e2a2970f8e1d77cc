"""Every command answers ``--help``, ``--version`` and a bad flag before torch, Ray, transformers, pandas or
matplotlib load: parsing must not wait seconds (30-45 s on a loaded machine) for libraries it does not use.

Each command runs in its own interpreter, as a user runs it, so one command's imports cannot hide another's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sparsepo import cli

HEAVY = ("torch", "ray", "transformers", "pandas", "matplotlib")

# For each argv: its exit status, stdout and stderr (argparse exits through SystemExit), then the heavy
# modules loaded by then, as one JSON line on the real stdout.
PROBE = """
import contextlib, io, json, sys
from sparsepo.cli import main
runs = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    runs.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps({"runs": runs, "heavy": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)}))
"""


def probe(*argvs: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(argvs)), json.dumps(HEAVY)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(cli.commands()))
def test_help_version_and_bad_flag_load_no_heavy_library(name):
    got = probe([name, "--help"], [name, "--version"], [name, "--no-such-flag"])
    helped, version, bad = got["runs"]
    assert helped["code"] == 0 and helped["out"].startswith(f"usage: sparsepo {name}")
    assert version["code"] == 0 and version["out"].startswith("sparsepo ")
    assert bad["code"] == 2 and bad["err"].strip().splitlines()[-1].startswith(f"sparsepo {name}: error:")
    assert got["heavy"] == [], f"`sparsepo {name}` parsing imported {got['heavy']}"


def test_top_level_help_version_and_unknown_command_load_no_heavy_library():
    got = probe(["--help"], ["--version"], ["trian"])
    assert [r["code"] for r in got["runs"]] == [0, 0, 2]
    assert "invalid choice: 'trian'" in got["runs"][2]["err"]
    assert got["heavy"] == []


def test_experiment_flags_show_defaults_without_building_the_config():
    # FrontierConfig() checks its settings against the loss registry (torch); --help reads field defaults instead.
    got = probe(["frontier", "--help"])
    assert "default: dpo sparsepo mapo]" in " ".join(got["runs"][0]["out"].split()) and got["heavy"] == []


def test_every_benchmark_help_and_bad_flag_load_no_heavy_library():
    """``sparsepo bench NAME --help`` lists the benchmark's typed flags (choices, defaults) before torch loads."""
    from sparsepo.bench import BENCHMARKS

    got = probe(*([["bench", name, "--help"] for name in BENCHMARKS] + [["bench", "step", "--steps", "0"]]))
    *helped, bad = got["runs"]
    for name, run in zip(BENCHMARKS, helped, strict=True):
        assert run["code"] == 0 and run["out"].startswith(f"usage: sparsepo bench {name}") and "--check" in run["out"], run
    assert "{one,multi,both}" in helped[0]["out"] and "default: dpo simpo dpop" in " ".join(helped[0]["out"].split())
    assert bad["code"] == 2 and bad["err"].strip() == "sparsepo: error: flags: steps: must be >= 1, got 0"
    assert got["heavy"] == [], f"`sparsepo bench NAME --help` imported {got['heavy']}"
