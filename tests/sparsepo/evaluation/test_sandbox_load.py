"""Time in the sandbox is judged by CPU time: scores are the same on an idle and on a saturated machine."""

from __future__ import annotations

import os

import pytest

from sparsepo.bench.common import busy_neighbours
from sparsepo.evaluation import sandbox
from sparsepo.evaluation.sandbox import SandboxConfig, run_many, run_program

# about 0.3 s of CPU on this machine, whatever the wall clock
WORK = "n = 0\nfor i in range(4_000_000):\n    n += i\nassert n == 7_999_998_000_000\n"
NEIGHBOURS = 8 * (os.cpu_count() or 1)  # 8 busy-looping processes per core, each its own job (session)


def test_results_record_cpu_time_wall_time_run_queue_wait_and_load():
    r = run_program(WORK, SandboxConfig(timeout_s=20.0, memory_mb=256))
    assert r.passed and 0.05 < r.cpu_s < r.duration_s + 0.5 and r.wait_s >= 0 and r.load >= 0 and r.reruns == 0


def test_a_program_that_sleeps_is_stopped_by_the_wall_clock_backstop_not_by_cpu_time():
    r = run_program("import time\ntime.sleep(60)\n", SandboxConfig(timeout_s=1.0, wall_s=2.0, memory_mb=256))
    assert r.status == "timeout" and r.detail.startswith("wall-clock backstop 2s") and r.cpu_s < 1.0
    assert 1.5 < r.duration_s < 30


def test_the_cpu_budget_counts_every_process_of_the_program():
    """Two children each spinning for 0.8 s of CPU: neither passes RLIMIT_CPU alone, the tree passes 1 s."""
    src = ("import os, time\npids = []\nfor _ in range(2):\n    pid = os.fork()\n    if pid == 0:\n"
           "        end = time.process_time() + 0.8\n        while time.process_time() < end:\n            pass\n"
           "        os._exit(0)\n    pids.append(pid)\nfor pid in pids:\n    os.waitpid(pid, 0)\n")
    over = run_program(src, SandboxConfig(timeout_s=1.0, wall_s=60.0, memory_mb=256))
    assert over.status == "timeout" and over.detail.startswith("CPU-time limit 1s"), over
    assert run_program(src, SandboxConfig(timeout_s=3.0, memory_mb=256)).passed


def test_a_backstop_timeout_on_a_saturated_machine_is_run_once_more(monkeypatch):
    """(`saturated` patched: a 1-minute load average cannot be raised within a fast test.)"""
    monkeypatch.setattr(sandbox, "saturated", lambda: True)
    r = run_program("import time\ntime.sleep(60)\n", SandboxConfig(timeout_s=0.5, wall_s=1.0, memory_mb=256))
    assert r.status == "timeout" and r.reruns == 1
    monkeypatch.setattr(sandbox, "saturated", lambda: False)
    assert run_program(WORK, SandboxConfig(timeout_s=0.05, wall_s=30.0, memory_mb=256)).reruns == 0


@pytest.mark.slow
def test_a_starved_program_passes_when_its_cpu_time_fits_though_its_wall_time_does_not():
    """Measured before the CPU-time judge: all 4 scored `timeout` (0.9 s of wall clock against 0.6 s)."""
    limits = SandboxConfig(timeout_s=0.6, memory_mb=256)
    with busy_neighbours(NEIGHBOURS, seconds=120):
        starved = run_many([WORK] * 4, limits, workers=2)
    assert all(r.passed for r in starved), [(r.status, r.detail, r.cpu_s, r.duration_s) for r in starved]
    assert min(r.duration_s for r in starved) > 0.6 > max(r.cpu_s for r in starved)  # it waited for the CPU


@pytest.mark.slow
def test_humaneval_canonical_solutions_and_hostile_programs_score_the_same_idle_and_loaded():
    """All 164 canonical HumanEval solutions pass beside 8 busy neighbours per core; hostile programs keep their
    statuses; the statuses (so pass@k) of a fixed sample set (canonical and wrong solutions of 20 problems,
    endless ones of 4) are identical idle and loaded."""
    from sparsepo.evaluation.code import DEFAULT_SANDBOX, load_humaneval

    problems = load_humaneval()
    canonical = [p.program(p.canonical_solution) for p in problems]
    fixed = [p.program(body) for p in problems[:20] for body in (p.canonical_solution, "    return None\n")]
    fixed += [p.program("    while True:\n        pass\n") for p in problems[:4]]
    hostile = {"while True:\n    pass\n": "timeout", "hog = []\nwhile True:\n    hog.append(bytearray(2**25))\n": "failed",
               "import sys\nsys.exit(0)\nassert False\n": "failed", "assert sorted([2, 1]) == [1, 2]\n": "passed"}
    limits = SandboxConfig(timeout_s=1.0, memory_mb=512)
    idle = [r.status for r in run_many(fixed, limits)]
    with busy_neighbours(NEIGHBOURS, seconds=300):
        loaded_canonical = run_many(canonical, DEFAULT_SANDBOX)
        loaded = [r.status for r in run_many(fixed, limits)]
        loaded_hostile = [r.status for r in run_many(list(hostile), limits)]
    failed = [(p.task_id, r.status, r.detail) for p, r in zip(problems, loaded_canonical, strict=True) if not r.passed]
    assert not failed, failed
    assert loaded == idle and idle.count("passed") == 20 and idle.count("timeout") == 4
    assert loaded_hostile == list(hostile.values())
