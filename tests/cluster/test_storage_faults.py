"""Storage faults on a real S3 server (moto's): a checkpoint left half-written by a killed writer is never used,
and the store going dark for seconds mid-run costs no step (the run retries, or fails loudly and resumes)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pyarrow.fs
import pytest
import ray

from sparsepo.sweeps.tuning import saved_history
from sparsepo.training.checkpoint import HISTORY_FILE, complete_checkpoints
from sparsepo.training.train import make_trainer
from tests.sparsepo.training.test_trainer import losses, tiny_cfg


class FlakyProxy:
    """A TCP proxy in front of the S3 server that can go dark: while down it cuts every open connection and
    closes each new one at once, as a store behind a failed load balancer does."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.up = threading.Event()
        self.up.set()
        self.open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            if not self.up.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(1 << 16):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                s.close()
                self.open.discard(s)

    def outage(self, seconds: float) -> None:
        self.up.clear()
        for s in list(self.open):
            s.close()
        time.sleep(seconds)
        self.up.set()


@pytest.fixture(scope="module")
def proxy(s3_server):
    """The S3 server behind a :class:`FlakyProxy`, and a local Ray whose workers reach storage through it."""
    import os

    p = FlakyProxy(s3_server)
    os.environ["AWS_ENDPOINT_URL"] = p.url
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield p
    ray.shutdown()
    os.environ["AWS_ENDPOINT_URL"] = s3_server


def wait_for_step(run: str, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not any(s >= step for s, _ in complete_checkpoints(run)):
        if time.time() > deadline:
            raise TimeoutError(f"no complete checkpoint of step {step} in {run}")
        time.sleep(0.5)


def test_a_checkpoint_half_written_by_a_killed_writer_is_never_used(proxy, s3_bucket):
    common = {"optim.batch_size": 2, "run.save_every": 2, "run.keep_checkpoints": 3, "mask.kind": "random"}
    first = make_trainer(tiny_cfg(f"{s3_bucket}/runs", "cut", **common, **{"optim.max_steps": 4})).fit()
    assert first.error is None
    run = f"{s3_bucket}/runs/cut"
    assert [s for s, _ in complete_checkpoints(run)] == [2, 4]
    # What a writer killed while uploading step 6 leaves: a newer checkpoint folder whose metrics file arrived
    # (saying step 6) but not its weights or training state. Ray never registered it.
    fs, last = pyarrow.fs.FileSystem.from_uri(complete_checkpoints(run)[-1][1])
    with fs.open_input_stream(f"{last}/{HISTORY_FILE}") as f:
        history = [json.loads(line) for line in f.readall().decode().splitlines()]
    partial = f"{last.rsplit('/', 1)[0]}/checkpoint_9999-12-31_23-59-59.000000"
    with fs.open_output_stream(f"{partial}/{HISTORY_FILE}") as f:
        f.write("\n".join(json.dumps({**history[-1], "step": s}) for s in range(1, 7)).encode())
    assert [s for s, _ in complete_checkpoints(run)] == [2, 4]
    assert [m["step"] for m in saved_history(run)] == [1, 2, 3, 4]
    resumed = make_trainer(tiny_cfg(f"{s3_bucket}/runs", "cut", **common,
                                    **{"optim.max_steps": 6, "run.resume": True})).fit()
    assert resumed.error is None and [m["step"] for m in resumed.return_value] == list(range(1, 7))
    assert losses(resumed)[:4] == losses(first)  # steps 1-4 come from step 4's checkpoint, 5-6 were trained
    assert history[-1]["loss"] not in losses(resumed)[4:]  # not the half-written folder's rows
    assert [m["step"] for m in saved_history(run)] == list(range(1, 7))


def test_the_store_dark_for_seconds_mid_run_loses_no_step(proxy, s3_bucket):
    common = {"optim.batch_size": 2, "optim.max_steps": 8, "run.save_every": 2, "mask.kind": "random"}
    clean = make_trainer(tiny_cfg(f"{s3_bucket}/runs", "clean", **common)).fit()
    run = f"{s3_bucket}/runs/dark"
    seen = {}

    def go_dark() -> None:
        wait_for_step(run, 2)
        seen["before"] = max(s for s, _ in complete_checkpoints(run))
        proxy.outage(8.0)
        seen["after"] = max(s for s, _ in complete_checkpoints(run))

    cut = threading.Thread(target=go_dark, daemon=True)
    cut.start()
    flaky = make_trainer(tiny_cfg(f"{s3_bucket}/runs", "dark", **common, **{"run.max_failures": 5})).fit()
    cut.join(timeout=60)
    assert not cut.is_alive() and seen["before"] < 8, "the store did not go dark while the run trained"
    if flaky.error is not None:  # a loud failure: `--resume` (run.resume) must carry the run to its end
        flaky = make_trainer(tiny_cfg(f"{s3_bucket}/runs", "dark", **common, **{"run.resume": True})).fit()
        assert flaky.error is None
    history = saved_history(run)
    assert [m["step"] for m in history] == list(range(1, 9))
    assert [m["loss"] for m in history] == pytest.approx(losses(clean), rel=1e-5, abs=1e-6)
