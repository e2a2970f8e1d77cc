"""`python -m sparsepo.training.train`: the command line a user runs, in its own process with its own Ray instance."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


ARGS = ["method=dpo", "model.name=tiny-llama", "data.path=offline:review-pairs", "data.limit=8", "data.max_length=48",
        "data.max_prompt_length=32", "optim.max_steps=2", "optim.batch_size=2", "run.chunk_size=64"]


def train_cli(tmp_path: Path, extra: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, str]:
    """``python -m sparsepo.training.train`` on 8 review pairs and tiny-llama, storing under ``tmp_path``, in its
    own local Ray instance (not a test session's); returns the process and its stdout + stderr."""
    env = {**os.environ, "RAY_ADDRESS": "", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "sparsepo.training.train", *ARGS, f"run.storage_path={tmp_path}", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return proc, proc.stdout + proc.stderr


def test_cli_trains_prints_progress_once_per_step_and_the_policy_path(tmp_path):
    proc, out = train_cli(tmp_path, ["run.log_every=1", "run.name=cli"])
    assert proc.returncode == 0, out[-4000:]
    # Worker lines reach the driver once each (Ray Train V2 echoes a worker's print() twice).
    for step in (1, 2):
        assert out.count(f"[sparsepo] step {step}/2 ") == 1, out[-4000:]
    assert out.count("[sparsepo] offline:review-pairs: kept 8 of 8 pairs") == 1  # the worker's line, once
    policy = proc.stdout.strip().splitlines()[-1].removeprefix("policy checkpoint: ")
    assert policy.startswith(str(tmp_path / "cli" / "checkpoint_"))
    assert AutoModelForCausalLM.from_pretrained(policy).config.model_type == "llama"


def test_cli_in_local_mode_trains_in_its_own_process_without_starting_ray(tmp_path):
    trace = tmp_path / "startup.tsv"
    proc, out = train_cli(tmp_path, ["run.name=local", "run.num_workers=0"], {"SPARSEPO_STARTUP_TRACE": str(trace)})
    assert proc.returncode == 0, out[-4000:]
    for step in (1, 2):
        assert out.count(f"[sparsepo] step {step}/2 ") == 1, out[-4000:]
    assert "Reported metrics" not in out and "Running in local mode" not in out  # Ray's per-report lines quieted
    marks = [line.split("\t") for line in trace.read_text().splitlines()]
    phases = [m[3] for m in marks]
    assert "worker: first optimizer step done" in phases and "driver: ray.init done" not in phases
    assert len({m[2] for m in marks}) == 1  # one pid: the loop ran in the driver's own process
    policy = proc.stdout.strip().splitlines()[-1].removeprefix("policy checkpoint: ")
    assert policy.startswith(str(tmp_path / "local" / "checkpoint_"))
    assert AutoModelForCausalLM.from_pretrained(policy).config.model_type == "llama"
