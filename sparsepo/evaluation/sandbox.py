"""Run untrusted Python programs (model-written code + unit tests) in a sandbox.

Each program runs in its own process tree, launched as ``unshare ... python sandbox_bootstrap.py CONFIG``:

* ``isolation="namespaces"`` (default): new network, mount, PID, IPC and UTS namespaces. No network
  (the new namespace's loopback is down, so even 127.0.0.1 is unreachable); every mount is remounted
  read-only and nosuid, and the working directory is a fresh size-limited tmpfs, the only writable
  place. The bootstrap is PID 1 of the namespace, so when it exits the kernel kills every process the
  program left behind (even ones that called ``setsid``). As root the program runs under a random
  unused uid/gid (so RLIMIT_NPROC, which never binds root, binds it, and it can signal nothing outside
  its tree); as a normal user an unprivileged user namespace is used and all capabilities are dropped.
* ``isolation="uid"`` (root only, for hosts without namespaces, e.g. containers without CAP_SYS_ADMIN):
  random uid + resource limits; files are protected only by permissions (world-writable dirs such as
  /tmp stay writable) and the network is NOT isolated.
* ``isolation="none"``: resource limits and a temp cwd only. No filesystem or network isolation.

Resource limits (all modes): CPU time, a wall-clock backstop, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE,
RLIMIT_NOFILE, no core files, no_new_privs.

Time is judged by CPU time, so that a score does not depend on how busy the machine is: a program fails for
time when the CPU time of its whole process tree passes ``cpu_s`` (default ``timeout_s``; the bootstrap polls
/proc, and RLIMIT_CPU backs it per process). For programs that sleep or block there is a wall-clock backstop,
``wall_s`` (default ``max(3 timeout_s, timeout_s + 10)``), counted as wall time less the time the program
waited for a CPU (/proc/PID/schedstat), i.e. in the time it could actually have run. A program stopped only by
the backstop while the machine was saturated (1-minute load >= CPUs) is run once more before it is scored.
Each result records its CPU time, wall time, run-queue wait, the machine's load and whether it was re-run.

A program passes only if it exits 0 *and* writes a random per-run token that the harness appends as
its last line to file descriptor 3, so ``sys.exit(0)`` / ``os._exit(0)`` before the asserts fail.
(A program that deliberately reads its own source can forge the token; this guards against
accidental early exits of generated code, not against a deliberately adversarial author.)

The code that runs inside the sandbox is ``sandbox_bootstrap.py`` (standard library only).
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from sparsepo.evaluation import sandbox_bootstrap
from sparsepo.evaluation.sandbox_bootstrap import TOKEN_FD

ISOLATIONS = ("auto", "namespaces", "uid", "none")
_UID_RANGE = (1 << 20, 1 << 30)  # far above any real account, so a random pick owns no files/processes


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be set up on this host."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for one program. Times in seconds, sizes in MiB (output in bytes, kept per stream).

    ``max_file_mb`` bounds each file (RLIMIT_FSIZE); the tmpfs working directory holds 4x that.

    ``timeout_s`` is the time limit in CPU seconds of the program's process tree (``cpu_s`` overrides it);
    ``wall_s`` is the backstop for programs that do not compute (see the module doc). ``python`` defaults to
    the first interpreter among this one and the system ``python3`` that the sandbox user can run.
    """

    timeout_s: float = 10.0
    cpu_s: float | None = None
    wall_s: float | None = None
    memory_mb: int = 2048
    max_procs: int = 16
    max_file_mb: int = 16
    max_open_files: int = 256
    max_output_bytes: int = 64 * 1024
    isolation: str = "auto"
    python: str | None = None

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"SandboxConfig.isolation must be one of {ISOLATIONS}, got {self.isolation!r}")
        if self.timeout_s <= 0 or (self.cpu_s or 1) <= 0 or (self.wall_s or 1) <= 0 or self.memory_mb <= 0 or self.max_procs < 1 or self.max_file_mb < 1:
            raise ValueError(f"SandboxConfig: limits must be positive, got {self}")


@dataclass
class SandboxResult:
    """Outcome of one program. ``status`` is passed / failed / timeout / error (error = the sandbox
    itself could not run the program, not a fault of the program). Output fields keep the last
    ``max_output_bytes`` of each stream; ``duration_s`` is wall-clock seconds (of the run scored), ``cpu_s``
    the CPU seconds of the program's process tree, ``wait_s`` the seconds it waited for a CPU, ``load`` the
    machine's 1-minute load average at the end, ``reruns`` 1 when a backstop timeout under load was re-run."""

    passed: bool
    status: str
    stdout: str
    stderr: str
    duration_s: float
    exit_code: int | None
    detail: str = ""
    output_truncated: bool = False
    cpu_s: float = 0.0
    wait_s: float = 0.0
    load: float = 0.0
    reruns: int = 0


def cpu_budget_s(config: SandboxConfig) -> float:
    return config.cpu_s or config.timeout_s


def backstop_s(config: SandboxConfig) -> float:
    return config.wall_s or max(3 * config.timeout_s, config.timeout_s + 10)


def hard_limit_s(config: SandboxConfig) -> float:
    """The parent's last resort when the bootstrap itself hangs: far past any budget on a loaded machine."""
    return 10 * backstop_s(config) + 30


def saturated() -> bool:
    """Whether the machine's 1-minute load average reaches its CPU count."""
    return os.getloadavg()[0] >= (os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------- parent side


class _Tail:
    """Keeps the last ``cap`` bytes written to it."""

    def __init__(self, cap: int) -> None:
        self.cap, self.buf, self.total = cap, bytearray(), 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        if len(self.buf) > self.cap:
            del self.buf[: len(self.buf) - self.cap]

    def text(self) -> str:
        return self.buf.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _Plan:
    isolation: str
    python: str
    launcher: tuple[str, ...]


_plans: dict[tuple, _Plan] = {}
_plans_lock = threading.Lock()


def _launcher(isolation: str) -> tuple[str, ...]:
    if isolation != "namespaces":
        return ()
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SandboxUnavailable("isolation='namespaces' needs util-linux `unshare` on PATH")
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    ns = ("--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc")
    return (unshare, *user, *ns)


def _python_candidates(config: SandboxConfig) -> list[str]:
    if config.python:
        return [config.python]
    found = [sys.executable, shutil.which("python3"), "/usr/bin/python3", "/usr/local/bin/python3"]
    out: list[str] = []
    for path in found:
        if path and os.path.exists(path) and os.path.realpath(path) not in map(os.path.realpath, out):
            out.append(path)
    return out


def resolve(config: SandboxConfig) -> tuple[str, str]:
    """Check the sandbox works here; returns ``(isolation, python)`` actually used (cached per config).

    ``auto`` means ``namespaces``; a weaker mode is never chosen silently. Raises SandboxUnavailable.
    """
    plan = _plan(config)
    return plan.isolation, plan.python


def _plan(config: SandboxConfig) -> _Plan:
    key = (config.isolation, config.python, config.memory_mb, config.max_procs)
    with _plans_lock:
        if key not in _plans:
            _plans[key] = _probe(config)
        return _plans[key]


def _probe(config: SandboxConfig) -> _Plan:
    isolation = "namespaces" if config.isolation == "auto" else config.isolation
    if isolation == "uid" and os.geteuid() != 0:
        raise SandboxUnavailable("isolation='uid' needs root (it switches to an unprivileged uid)")
    launcher = _launcher(isolation)
    probe = replace(config, timeout_s=max(config.timeout_s, 20.0))
    errors = []
    for python in _python_candidates(config):
        plan = _Plan(isolation, python, launcher)
        result = _run(plan, "import sys\nassert sys.version_info >= (3, 8)\n", probe)
        if result.passed:
            return plan
        errors.append(f"{python}: {result.status} {result.detail} {result.stderr[-500:]}")
    raise SandboxUnavailable(
        f"sandbox (isolation={isolation!r}) cannot run a trivial program here:\n" + "\n".join(errors)
        + "\nUse SandboxConfig(isolation='uid') (root, no network isolation) or 'none' (no isolation)."
    )


def run_program(source: str, config: SandboxConfig | None = None) -> SandboxResult:
    """Run ``source`` (a whole Python program) in a fresh sandbox and score it (see module doc)."""
    config = config or SandboxConfig()
    result = _run(_plan(config), source, config)
    if result.status == "timeout" and result.detail.startswith("wall-clock backstop") and saturated():
        result = replace(_run(_plan(config), source, config), reruns=1)  # once: the load may have starved it
    return result


def run_many(
    programs: Sequence[str],
    config: SandboxConfig | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> list[SandboxResult]:
    """Run every program (in parallel, ``workers`` at a time, default one per core); results in order.

    A failing, hanging or crashing program never stops the others.
    """
    config = config or SandboxConfig()
    resolve(config)  # fail fast, once, if the sandbox cannot work here
    workers = max(1, workers or os.cpu_count() or 1)
    results: list[SandboxResult | None] = [None] * len(programs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(programs), desc="sandbox", unit="prog")

    def one(i: int) -> None:
        try:
            results[i] = run_program(programs[i], config)
        except Exception as exc:  # a broken run is recorded, never fatal for the batch
            results[i] = SandboxResult(False, "error", "", "", 0.0, None, detail=f"{type(exc).__name__}: {exc}")
        if bar is not None:
            bar.update(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(programs))))
    if bar is not None:
        bar.close()
    return [r for r in results if r is not None]


def _run(plan: _Plan, source: str, config: SandboxConfig) -> SandboxResult:
    token = secrets.token_hex(16)
    program = f"{source}\n\nimport os as _sandbox_os\n_sandbox_os.write({TOKEN_FD}, b'{token}')\n"
    root = tempfile.mkdtemp(prefix="sparsepo-sandbox-")
    token_r, token_w = os.pipe()
    status_r, status_w = os.pipe()
    start = time.monotonic()
    try:
        os.chmod(root, 0o711)  # the sandbox user may enter root/work, but not list or read root
        workdir = os.path.join(root, "work")
        os.mkdir(workdir, 0o700)
        uid = None
        if os.geteuid() == 0 and plan.isolation != "none":
            uid = _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0])
        if plan.isolation == "uid":
            os.chown(workdir, uid, uid)
        with open(os.path.join(root, "program.py"), "w", encoding="utf-8") as f:
            f.write(program)
        cfg = {
            "isolation": plan.isolation, "python": plan.python, "workdir": workdir, "uid": uid,
            "program": os.path.join(root, "program.py"), "token_fd": token_w, "status_fd": status_w,
            "cpu_s": cpu_budget_s(config), "wall_s": backstop_s(config),
            "memory_mb": config.memory_mb, "max_procs": config.max_procs, "max_file_mb": config.max_file_mb,
            "max_open_files": config.max_open_files,
        }
        with open(os.path.join(root, "config.json"), "w") as f:
            json.dump(cfg, f)
        argv = [*plan.launcher, sys.executable, "-I", "-S", sandbox_bootstrap.__file__,
                os.path.join(root, "config.json")]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(token_w, status_w), start_new_session=True, env={"PATH": os.environ.get("PATH", "")},
        )
        os.close(token_w)
        os.close(status_w)
        token_w = status_w = -1
        streams = _collect(proc, token_r, status_r, config, start)
        duration = time.monotonic() - start
        return _score(proc.returncode, streams, token, duration, config)
    finally:
        for fd in (token_r, token_w, status_r, status_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(root, ignore_errors=True)


def _collect(proc: subprocess.Popen, token_r: int, status_r: int, config: SandboxConfig, start: float) -> dict:
    """Drain all four pipes (keeping tails) until they close or the wall-clock deadline passes."""
    assert proc.stdout is not None and proc.stderr is not None
    tails = {
        proc.stdout.fileno(): ("stdout", _Tail(config.max_output_bytes)),
        proc.stderr.fileno(): ("stderr", _Tail(config.max_output_bytes)),
        token_r: ("token", _Tail(256)),
        status_r: ("status", _Tail(64 * 1024)),
    }
    deadline = start + hard_limit_s(config)  # the bootstrap's own limits fire first
    timed_out = False
    with selectors.DefaultSelector() as sel:
        for fd in tails:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if proc.poll() is not None:  # leftover children must not hold the pipes open for long
                deadline = min(deadline, now + 0.5)
            for key, _ in sel.select(timeout=min(0.2, deadline - now)):
                data = os.read(key.fd, 1 << 16)
                if data:
                    tails[key.fd][1].add(data)
                else:
                    sel.unregister(key.fd)
    try:  # pipes are closed; the launcher itself may still be exiting
        proc.wait(timeout=0 if timed_out else max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # not yet reaped, so the pid (= pgid) is still ours
        except ProcessLookupError:
            pass
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    out = {name: tail for name, tail in tails.values()}
    out["parent_timeout"] = timed_out
    return out


def _score(returncode: int, streams: dict, token: str, duration: float, config: SandboxConfig) -> SandboxResult:
    stdout, stderr = streams["stdout"], streams["stderr"]
    truncated = max(stdout.total, stderr.total) > config.max_output_bytes
    report: dict = {}
    for line in streams["status"].text().splitlines():  # written only by the bootstrap, never the program
        try:
            fields = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "error" not in report:
            report.update(fields)
    exit_code = report.get("exit")
    if streams["parent_timeout"]:
        status, detail = "timeout", f"the sandbox did not finish within {hard_limit_s(config):g} s of wall clock"
    elif report.get("timeout") == "wall":
        status, detail = "timeout", f"wall-clock backstop {backstop_s(config):g}s exceeded (not computing)"
    elif report.get("timeout") == "cpu" or report.get("signal") == signal.SIGXCPU:
        status, detail = "timeout", f"CPU-time limit {cpu_budget_s(config):g}s exceeded"
    elif "error" in report or not report:
        status = "error"
        detail = report.get("error") or f"sandbox launcher exited with {returncode} without a report"
    elif exit_code == 0 and streams["token"].text() == token:
        status, detail = "passed", ""
    else:
        status = "failed"
        if "signal" in report:
            detail = f"killed by signal {report['signal']}"
        elif exit_code != 0:
            detail = f"exit code {exit_code}"
        else:
            detail = "exited with 0 before reaching the end of the program"
    return SandboxResult(
        passed=status == "passed", status=status, stdout=stdout.text(), stderr=stderr.text(),
        duration_s=duration, exit_code=exit_code, detail=detail, output_truncated=truncated,
        cpu_s=float(report.get("cpu_s", 0.0)), wait_s=float(report.get("wait_s", 0.0)), load=os.getloadavg()[0],
    )
