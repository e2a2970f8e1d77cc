"""Start-up costs of a training run: what the trainer module loads, the schedule it builds in place of
transformers', and the ``SPARSEPO_STARTUP_TRACE`` phase marks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from sparsepo.logs import STARTUP_TRACE_ENV, startup_mark
from sparsepo.training.optim import cosine_schedule

# Loaded by transformers.optimization (1.5-1.8 CPU-s of the driver's start-up), used by neither driver nor worker.
NOT_LOADED = ("peft", "bitsandbytes", "transformers.optimization", "torch._inductor.compile_fx")


def test_importing_the_trainer_loads_neither_peft_nor_bitsandbytes_nor_inductor():
    code = "import json, sys, sparsepo.training.trainer, sparsepo.training.train; " \
           f"print(json.dumps([m for m in {list(NOT_LOADED)!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _lrs(make, warmup: int, total: int) -> tuple[list[float], dict]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    sched = make(opt, warmup, total)
    lrs = []
    for _ in range(total + 2):  # and past the end, where the factor stays 0
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return lrs, sched.state_dict()


@pytest.mark.parametrize(("warmup", "total"), [(0, 1), (0, 7), (3, 10), (10, 10), (1, 250), (25, 250)])
def test_cosine_schedule_gives_transformers_learning_rates_bit_for_bit(warmup, total):
    ours, ours_state = _lrs(cosine_schedule, warmup, total)
    theirs, their_state = _lrs(get_cosine_schedule_with_warmup, warmup, total)
    assert ours == theirs  # exact: the same float operations
    assert ours_state.keys() == their_state.keys() and ours_state["last_epoch"] == their_state["last_epoch"]


def test_a_cosine_schedule_resumes_from_a_transformers_state_dict():
    _, state = _lrs(get_cosine_schedule_with_warmup, 3, 10)  # a checkpoint written before the switch
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    sched = cosine_schedule(opt, 3, 10)
    sched.load_state_dict(state)
    assert sched.last_epoch == state["last_epoch"] and sched.get_last_lr() == state["_last_lr"]


def test_startup_marks_append_seconds_cpu_pid_and_phase_only_when_asked(tmp_path, monkeypatch):
    trace = tmp_path / "trace.tsv"
    monkeypatch.delenv(STARTUP_TRACE_ENV, raising=False)
    startup_mark("unasked")
    assert not trace.exists()
    monkeypatch.setenv(STARTUP_TRACE_ENV, str(trace))
    monkeypatch.setenv("SPARSEPO_STARTUP_T0", "")  # unset for startup_mark; removed again after the test
    startup_mark("first")
    startup_mark("second")
    rows = [line.split("\t") for line in trace.read_text().splitlines()]
    assert [r[3] for r in rows] == ["first", "second"] and {r[2] for r in rows} == {str(os.getpid())}
    wall = [float(r[0]) for r in rows]
    assert 0 < wall[0] <= wall[1]  # seconds since this process started
    assert float(os.environ["SPARSEPO_STARTUP_T0"]) > 0  # the origin, for the processes started after
