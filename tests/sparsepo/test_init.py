"""Importing sparsepo changes nothing; the command line bounds OpenMP spin-waiting before torch loads, for itself
and its children, unless the user chose a policy."""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = "import os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


def _env_seen_by_a_child(env: dict[str, str], via_cli: bool) -> str:
    start = ("from sparsepo import cli\ntry:\n    cli.main(['--version'])\nexcept SystemExit:\n    pass\n"
             if via_cli else "import sparsepo, sparsepo.objectives.losses\n")
    code = start + f"import subprocess, sys; print(subprocess.run([sys.executable, '-c', {CHILD!r}], " \
                   "capture_output=True, text=True).stdout.strip())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}


def test_importing_the_library_leaves_the_environment_alone():
    assert _env_seen_by_a_child(_clean_env(), via_cli=False) == "None None"


def test_the_command_line_bounds_the_spin_count_for_the_process_and_its_children():
    assert _env_seen_by_a_child(_clean_env(), via_cli=True) == "10000 None"


def test_a_wait_policy_or_spin_count_the_user_set_wins():
    assert _env_seen_by_a_child({**_clean_env(), "OMP_WAIT_POLICY": "PASSIVE"}, via_cli=True) == "None PASSIVE"
    assert _env_seen_by_a_child({**_clean_env(), "GOMP_SPINCOUNT": "300000"}, via_cli=True) == "300000 None"
