"""Every command answers ``--help``, ``--version`` and a bad flag before torch, Ray, transformers, pandas or
matplotlib load: parsing must not wait seconds (30-45 s on a loaded machine) for libraries it does not use.
A mistake in a training config (``sparsepo train``, an experiment's ``key=value`` overrides) is caught at load,
before them too, and ``sparsepo train --help`` lists every config key.

Each command runs in its own interpreter, as a user runs it, so one command's imports cannot hide another's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparsepo import cli
from sparsepo.experiments import EXPERIMENTS

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


REPO = Path(__file__).resolve().parents[2]

# A config mistake of each kind, and the line that names it: an unknown key, a value of the wrong type, one out of
# range, and a bad choice (a Literal's, then the method and mask-kind registries').
CONFIG_MISTAKES = [
    ("optim.lrr=1", "optim.lrr: unknown key (did you mean 'lr'?)"),
    ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
    ("optim.warmup_ratio=2", "optim.warmup_ratio: must be <= 1, got 2"),
    ("run.strategy=fdsp", "run.strategy: 'fdsp' is not one of 'ddp', 'fsdp' (did you mean 'fsdp'?)"),
    ("method=sparspo", "method: 'sparspo' is not one of 'cdpo', "),
    ("mask.kind=binery", "mask.kind: 'binery' is not one of 'learned', 'binary', 'random' (did you mean 'binary'?)"),
]


@pytest.mark.parametrize("command", [["train", "--config", str(REPO / "configs/dpo.yaml"), "--check"],
                                     *([name, "--check"] for name in EXPERIMENTS)], ids=lambda c: c[0])
def test_config_mistakes_are_one_line_before_torch_loads(command):
    # `sparsepo train` and an experiment's TrainConfig overrides: each mistake is caught at load, whose imports
    # (the schema, the method and mask registries) do not need torch; nothing expensive has started yet.
    got = probe(*([*command, override] for override, _ in CONFIG_MISTAKES))
    for run, (override, message) in zip(got["runs"], CONFIG_MISTAKES, strict=True):
        lines = run["err"].strip().splitlines()
        assert run["code"] == 2 and len(lines) == 1 and lines[0].startswith("sparsepo: error: "), (override, lines)
        assert message in lines[0], (override, lines[0])
    assert got["heavy"] == [], f"`sparsepo {command[0]}` imported {got['heavy']} before a config error"


def test_train_help_lists_every_config_key_with_type_default_and_choices():
    from sparsepo.config.schema import TrainConfig

    got = probe(["train", "--help"])
    out = got["runs"][0]["out"]
    assert got["heavy"] == []
    listed = {line.split()[0] for line in out.split("config keys")[1].splitlines() if line.startswith("  ") and
              not line.startswith("   ")}

    def keys(values: dict, prefix: str = "") -> set[str]:
        return {k for name, v in values.items() for k in (
            keys(v, f"{prefix}{name}.") if isinstance(v, dict) and name not in ("loss", "evaluator_args")
            else {prefix + name})}

    assert keys(TrainConfig().to_dict()) <= listed
    flat = " ".join(out.split())  # choices may wrap
    for row in ("optim.adamw str auto [auto, fused, foreach, loop]", "run.strategy str ddp [ddp, fsdp]",
                "model.dtype str float32 [float32, bfloat16, float16, auto]", "optim.lr float > 0 5e-06",
                "mask.kind str learned [learned, binary, random]", "run.fused_head bool or str auto [true, false, auto]",
                "optim.warmup_ratio float in [0, 1] 0.1", "run.keep_checkpoints int or null >= 1 2",
                "method str sparsepo [cdpo, confpo, dpo,"):
        assert row in flat, row
    assert "tisdpo mu=1 clip=1 beta=0.1" in flat  # each method's loss.* keys with their defaults


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
