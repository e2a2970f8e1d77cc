"""Importing sparsepo bounds OpenMP spin-waiting before torch loads, unless the user chose a policy."""

from __future__ import annotations

import os
import subprocess
import sys


def _env_seen_by_a_child(env: dict[str, str]) -> str:
    child = "import os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    code = f"import sparsepo, torch, subprocess, sys; print(subprocess.run([sys.executable, '-c', {child!r}], " \
           "capture_output=True, text=True).stdout.strip())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}


def test_import_bounds_the_spin_count_for_the_process_and_its_children():
    assert _env_seen_by_a_child(_clean_env()) == "10000 None"


def test_a_wait_policy_or_spin_count_the_user_set_wins():
    assert _env_seen_by_a_child({**_clean_env(), "OMP_WAIT_POLICY": "PASSIVE"}) == "None PASSIVE"
    assert _env_seen_by_a_child({**_clean_env(), "GOMP_SPINCOUNT": "300000"}) == "300000 None"
