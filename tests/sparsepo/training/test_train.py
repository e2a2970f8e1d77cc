"""`python -m sparsepo.training.train`: the command line a user runs, in its own process with its own Ray instance."""

import os
import subprocess
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[3]


def test_cli_trains_prints_progress_once_per_step_and_the_policy_path(tmp_path):
    args = ["method=dpo", "model.name=tiny-llama", "data.path=offline:review-pairs", "data.limit=8",
            "data.max_length=48", "data.max_prompt_length=32", "optim.max_steps=2", "optim.batch_size=2",
            "run.log_every=1", "run.chunk_size=64", f"run.storage_path={tmp_path}", "run.name=cli"]
    env = {**os.environ, "RAY_ADDRESS": ""}  # its own local Ray instance, not a test session's
    proc = subprocess.run([sys.executable, "-m", "sparsepo.training.train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # Worker lines reach the driver once each (Ray Train V2 echoes a worker's print() twice).
    for step in (1, 2):
        assert out.count(f"[sparsepo] step {step}/2 ") == 1, out[-4000:]
    assert out.count("[sparsepo] offline:review-pairs: kept 8 of 8 pairs") == 1  # the worker's line, once
    policy = proc.stdout.strip().splitlines()[-1].removeprefix("policy checkpoint: ")
    assert policy.startswith(str(tmp_path / "cli" / "checkpoint_"))
    assert AutoModelForCausalLM.from_pretrained(policy).config.model_type == "llama"
