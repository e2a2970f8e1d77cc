"""The sandbox against real hostile programs: each is contained, scored failed/timeout, and the next runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sparsepo.evaluation import sandbox
from sparsepo.evaluation.sandbox import SandboxConfig, SandboxUnavailable, resolve, run_many, run_program

# These start as root and switch to other uids; a non-root run exercises the user-namespace path instead.
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
LIMITS = SandboxConfig(timeout_s=2.0, memory_mb=256, max_procs=8, max_file_mb=4, max_output_bytes=4096)


def sandbox_uid_processes() -> list[int]:
    """Pids of live processes owned by a uid from the sandbox's random-uid range (root mode)."""
    lo, hi = sandbox._UID_RANGE
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid_line = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if lo <= int(uid_line.split()[1]) < hi:
            pids.append(int(entry.name))
    return pids


def test_correct_program_passes_and_wrong_one_fails() -> None:
    ok = run_program("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('done')\n", LIMITS)
    assert ok.passed and ok.status == "passed" and ok.exit_code == 0
    assert ok.stdout == "done\n"
    bad = run_program("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n", LIMITS)
    assert not bad.passed and bad.status == "failed" and bad.exit_code == 1
    assert "AssertionError" in bad.stderr
    syntax = run_program("def add(a, b)\n    return a + b\n", LIMITS)
    assert syntax.status == "failed" and "SyntaxError" in syntax.stderr


def test_workdir_is_fresh_and_writable(tmp_path: Path) -> None:
    src = (
        "import os\n"
        "assert os.listdir('.') == ['program.py'], os.listdir('.')\n"
        "with open('scratch.txt', 'w') as f:\n    f.write('data')\n"
        "assert open('scratch.txt').read() == 'data'\n"
    )
    first, second = run_many([src, src], LIMITS, workers=2)
    assert first.passed and second.passed, (first, second)


@dataclass
class Bait:
    """What hostile programs aim at on the host: a world-writable directory and file (only the sandbox, not
    permissions, protects them), two paths to escape to, a TCP listener, and a Unix socket anyone may connect to
    (like the D-Bus system bus: filesystem-based, so not covered by the network namespace)."""

    victim_dir: Path
    canary: Path
    escape: Path
    shm_escape: Path
    server: socket.socket
    unix_path: Path
    unix_server: socket.socket


@pytest.fixture(scope="module")
def bait(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bait]:
    victim_dir = tmp_path_factory.mktemp("victim")
    victim_dir.chmod(0o777)
    canary = victim_dir / "canary.txt"
    canary.write_text("precious")
    canary.chmod(0o666)
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    socket_dir = Path(tempfile.mkdtemp(dir="/tmp"))
    socket_dir.chmod(0o777)
    unix_path = socket_dir / "open.sock"
    unix_server = socket.socket(socket.AF_UNIX)
    unix_server.bind(str(unix_path))
    unix_path.chmod(0o777)
    unix_server.listen()
    unix_server.setblocking(False)
    yield Bait(victim_dir, canary, Path("/tmp") / f"sparsepo-sandbox-escape-{os.getpid()}",
               Path("/dev/shm") / f"sparsepo-sandbox-escape-{os.getpid()}", server, unix_path, unix_server)
    server.close()
    unix_server.close()
    shutil.rmtree(socket_dir)


def hostile_programs(bait: Bait) -> dict[str, str]:
    """Name -> source of each hostile program (and one correct program last, which must still pass)."""
    tamper = f"""
import os, shutil
C, D = {str(bait.canary)!r}, {str(bait.victim_dir)!r}
attempts = [
    lambda: open(C, 'a').write('x'), lambda: open(C, 'w').write('x'), lambda: os.remove(C),
    lambda: os.rename(C, C + '.moved'), lambda: os.chmod(C, 0), lambda: open(os.path.join(D, 'new'), 'w'),
    lambda: shutil.rmtree(D), lambda: open({str(bait.escape)!r}, 'w'), lambda: open({str(bait.shm_escape)!r}, 'w'),
]
refused = 0
for attempt in attempts:
    try:
        attempt()
    except OSError:
        refused += 1
raise SystemExit(f'{{refused}} of {{len(attempts)}} writes refused')
"""
    port = bait.server.getsockname()[1]
    kill_parents = f"""
import os, signal
for attempt in (lambda: os.kill({os.getpid()}, signal.SIGKILL), lambda: os.killpg({os.getpgrp()}, signal.SIGKILL)):
    try:
        attempt()
    except OSError:
        pass
if os.getppid() == 1:  # only inside a PID namespace, where -1 cannot reach the host
    os.kill(-1, signal.SIGKILL)
os.kill(os.getppid(), signal.SIGKILL)
"""
    return {
        "infinite loop": "while True:\n    pass\n",
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "memory bomb": "hog = []\nwhile True:\n    hog.append(bytearray(32 * 2**20))\n",
        "tamper": tamper,
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')\n",
        "unix socket": f"import socket\nsocket.socket(socket.AF_UNIX).connect({str(bait.unix_path)!r})\n",
        "kill parents": kill_parents,
        "huge output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
        "sys.exit(0)": "import sys\nsys.exit(0)\nassert False\n",
        "os._exit(0)": "import os\nos._exit(0)\nassert False\n",
        "setsid escapee": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        time.sleep(0.05)\n"
                           "assert False, 'parent gives up, child lingers'\n"),
        "correct after all that": "assert sorted([3, 1, 2]) == [1, 2, 3]\n",
    }


EXPECTED = {
    "infinite loop": "timeout", "fork bomb": "timeout", "memory bomb": "failed", "tamper": "failed",
    "network": "failed", "unix socket": "failed", "kill parents": "failed", "huge output": "timeout",
    "sys.exit(0)": "failed", "os._exit(0)": "failed", "setsid escapee": "failed", "correct after all that": "passed",
}


@pytest.fixture(scope="module")
def hostile_run(bait: Bait) -> tuple[dict[str, Any], float]:
    """Every hostile program in one batch on 2 workers: (name -> its result, the batch's seconds)."""
    programs = hostile_programs(bait)
    start = time.monotonic()
    results = dict(zip(programs, run_many(list(programs.values()), LIMITS, workers=2), strict=True))
    return results, time.monotonic() - start


def test_hostile_programs_run_in_namespaces() -> None:
    isolation, _ = resolve(LIMITS)
    assert isolation == "namespaces"  # what `auto` gives on this (root, Linux) host


@pytest.mark.parametrize("name", EXPECTED)
def test_each_hostile_program_is_scored(hostile_run: tuple[dict[str, Any], float], name: str) -> None:
    results, _ = hostile_run
    assert results[name].status == EXPECTED[name], (name, results[name])


def test_hostile_programs_fail_for_the_right_reason(hostile_run: tuple[dict[str, Any], float]) -> None:
    results, elapsed = hostile_run
    assert results["correct after all that"].passed
    assert "MemoryError" in results["memory bomb"].stderr
    assert "9 of 9 writes refused" in results["tamper"].stderr
    assert "Network is unreachable" in results["network"].stderr
    assert "FileNotFoundError" in results["unix socket"].stderr  # /tmp is an empty tmpfs in there
    huge = results["huge output"]
    assert huge.output_truncated and len(huge.stdout) <= LIMITS.max_output_bytes
    assert "before reaching the end" in results["sys.exit(0)"].detail
    assert results["os._exit(0)"].exit_code == 0 and not results["os._exit(0)"].passed
    # three 2 s timeouts on 2 workers: all ran, none hung (generous bound: the host may be busy)
    assert elapsed < 60, elapsed


def test_hostile_programs_leave_the_host_untouched(hostile_run: tuple[dict[str, Any], float], bait: Bait) -> None:
    assert bait.canary.read_text() == "precious"
    assert stat.S_IMODE(bait.canary.stat().st_mode) == 0o666
    assert sorted(p.name for p in bait.victim_dir.iterdir()) == ["canary.txt"]
    assert not bait.escape.exists() and not bait.shm_escape.exists()
    for listener in (bait.server, bait.unix_server):
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    assert sandbox_uid_processes() == []  # fork-bomb children and the setsid escapee are gone


COUNT_FORKS = """
import os, time
forks = 0
try:
    while forks < 100:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        forks += 1
except OSError:
    pass
print(forks)
assert forks < MAX_PROCS
"""


def test_process_limit_binds_the_sandbox_user() -> None:
    result = run_program(COUNT_FORKS.replace("MAX_PROCS", str(LIMITS.max_procs)), LIMITS)
    assert result.passed, result
    assert int(result.stdout) == LIMITS.max_procs - 1  # the program itself is the first process
    assert sandbox_uid_processes() == []  # the sleeping children died with the namespace


USER_NS_DRIVER = """
import json, os, sys
# The system python, not the venv: only the standard library and sparsepo's own (stdlib-only) sandbox modules.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[1])))))
from sparsepo.evaluation import sandbox as sb
config = sb.SandboxConfig(timeout_s=2.0, memory_mb=256, max_procs=8)
programs = json.loads(sys.stdin.read())
print(json.dumps([sb.resolve(config)[0]] + [r.status for r in sb.run_many(programs, config, workers=2)]))
"""


@NEEDS_ROOT
def test_unprivileged_user_gets_user_namespace_sandbox(tmp_path: Path) -> None:
    # The same sandbox started by a normal user: a user namespace replaces the uid switch.
    uid = 54000 + os.getpid() % 1000
    escape = tmp_path / "escape"
    tmp_path.chmod(0o777)
    programs = [
        COUNT_FORKS.replace("MAX_PROCS", "8"),
        f"open({str(escape)!r}, 'w')\n",
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.mount(None, b'/', None, 32 | 4096, None) == 0, 'remount refused'\n",  # MS_REMOUNT|MS_BIND
        "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "assert sum(range(4)) == 6\n",
    ]
    system_python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    proc = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", system_python, "-c", USER_NS_DRIVER,
         sandbox.__file__],
        input=json.dumps(programs), capture_output=True, text=True, timeout=120, cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["namespaces", "passed", "failed", "failed", "failed", "timeout", "passed"]
    assert not escape.exists()
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid]
    assert leftovers == []


def _owner(proc_dir: Path) -> int | None:
    try:
        return proc_dir.stat().st_uid
    except OSError:
        return None


def test_cpu_time_limit_is_a_timeout() -> None:
    result = run_program("while True:\n    pass\n", SandboxConfig(timeout_s=20.0, cpu_s=1, memory_mb=256))
    assert result.status == "timeout" and "CPU" in result.detail
    assert result.duration_s < 15


def test_file_size_limit() -> None:
    src = "with open('big', 'wb') as f:\n    f.write(b'x' * (8 * 2**20))\n"
    result = run_program(src, LIMITS)
    assert result.status == "failed" and "File too large" in result.stderr + result.stdout, result


@NEEDS_ROOT
def test_uid_isolation_contains_escapees_and_fork_bombs() -> None:
    # Fallback mode for hosts without namespaces: leftover processes are killed via the sandbox uid.
    limits = SandboxConfig(timeout_s=2.0, memory_mb=256, max_procs=8, isolation="uid")
    escapee = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    ok = "import os\nassert os.getuid() != 0\n"
    results = run_many([escapee, bomb, ok], limits, workers=2)
    assert [r.status for r in results] == ["passed", "timeout", "passed"], results
    assert sandbox_uid_processes() == []


def test_no_isolation_mode_still_scores_and_times_out() -> None:
    limits = SandboxConfig(timeout_s=1.0, memory_mb=256, isolation="none")
    results = run_many(["assert 1 + 1 == 2\n", "import sys\nsys.exit(0)\nassert False\n", "while True:\n    pass\n"],
                       limits, workers=2)
    assert [r.status for r in results] == ["passed", "failed", "timeout"], results


def test_unusable_interpreter_is_reported() -> None:
    with pytest.raises(SandboxUnavailable, match="cannot run a trivial program"):
        resolve(SandboxConfig(python="/nonexistent/python3"))


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="isolation"):
        SandboxConfig(isolation="docker")
    with pytest.raises(ValueError, match="positive"):
        SandboxConfig(timeout_s=0)
