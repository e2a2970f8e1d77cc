"""`ray job submit --working-dir . -- python tune/frontier.py` against a head started with `ray start --head`, with the
run's storage on the S3 server (moto's): the report is read back from the bucket."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def test_frontier_runs_unchanged_under_ray_job_submit_with_s3_storage(s3_bucket):
    gcs, dash = free_port(), free_port()
    # Ray 2.60 turns token authentication on for clusters on a machine that has a token (any earlier
    # ray.init() makes one); say so explicitly so the CLI client sends it too.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the job's `python` is this environment's
    subprocess.run(
        [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--disable-usage-stats"],
        check=True, env=env, capture_output=True, timeout=180,
    )
    try:
        passed = ("SPARSEPO_CACHE", "HF_HUB_OFFLINE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_DEFAULT_REGION")
        runtime_env = {"env_vars": {k: os.environ[k] for k in passed if k in os.environ}}
        submit = [RAY, "job", "submit", f"--address=http://127.0.0.1:{dash}", "--working-dir", ".",
                  f"--runtime-env-json={json.dumps(runtime_env)}", "--",
                  "python", "tune/frontier.py", "--model", "tiny-llama", "--methods", "dpo", "--betas", "0.5",
                  "--steps", "2", "--eval-every", "2", "--n-train-prompts", "16", "--n-test-prompts", "2",
                  "--storage-path", f"{s3_bucket}/runs", "--name", "job"]
        for _ in range(90):  # the head's job agent needs a few seconds after `ray start` (more on a loaded machine)
            out = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
            if "No available agent" not in out.stderr:
                break
            time.sleep(2)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "succeeded" in out.stdout
        fs, path = pyarrow.fs.FileSystem.from_uri(f"{s3_bucket}/runs/job/report/points.csv")
        with fs.open_input_stream(path) as f:
            points = pd.read_csv(io.BytesIO(f.readall()))
        assert points["method"].tolist() == ["reference", "dpo"]  # the step-0 point, then the trial's
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
