"""A command line refused as a user runs it: in its own interpreter, with its exit status, the last line it wrote
to stderr, its wall time and the heavy libraries loaded by the time it gave up (a bad setting must be refused
before Ray starts or a model loads; settings checks before torch is even imported)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "transformers")
PROBE = """
import contextlib, io, json, sys
from sparsepo.cli import main
err = io.StringIO()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as e:
        code = e.code
print(json.dumps({"code": code, "err": err.getvalue(), "heavy": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


@dataclass(frozen=True)
class Refusal:
    code: int
    error: str  # the last stderr line
    seconds: float  # wall time of the whole interpreter, as a user waits for it
    heavy: list[str]  # of HEAVY, those imported by then


def refuse(*argv: str) -> Refusal:
    """Run ``sparsepo ARGV`` in a fresh interpreter from the repository root."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(argv)), json.dumps(HEAVY)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = got["err"].strip().splitlines()
    print(f"exit {got['code']} after {seconds:.2f} s: sparsepo {' '.join(argv)}")  # -rA shows it: the issue asks for times
    return Refusal(got["code"], lines[-1] if lines else "", seconds, got["heavy"])
