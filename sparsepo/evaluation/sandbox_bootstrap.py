"""The sandbox's bootstrap: runs as ``python -I -S sandbox_bootstrap.py CONFIG`` inside the new namespaces.

It locks the filesystem down (read-only remounts, tmpfs working directory, hidden temp dirs), drops
privileges, sets the resource limits, runs the program as its child, reports how it ended on the status
pipe and kills whatever the program left behind. ``sparsepo.evaluation.sandbox`` is the parent side; see its
docstring for the isolation modes. Run as a script with ``-S``, so it imports only the standard library.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

INIT_ERROR_EXIT = 125  # exit status of a bootstrap that could not set the sandbox up
TOKEN_FD = 3  # the program writes its pass token to this descriptor

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 1, 2, 4, 8, 32, 4096
_MS_REC, _MS_PRIVATE = 16384, 1 << 18
_HIDDEN_DIRS = ("/tmp", "/var/tmp", "/run", "/dev/shm")
_MOUNT_OPTS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
               "relatime": 1 << 21, "strictatime": 1 << 24}  # flags a user-namespace remount must keep
_PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS = 24, 28, 36, 38
_SECBIT_NOROOT_AND_LOCKED = 0x3


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(libc, rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    import ctypes

    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(libc, libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _lock_filesystem(libc, workdir: str, size_mb: int, owner: int) -> None:
    """Make every mount read-only + nosuid, hide the usual homes of Unix sockets (a socket file on a
    read-only mount still accepts connections: D-Bus, Docker, ssh-agent...) under empty read-only
    tmpfs, then mount a private tmpfs at ``workdir``, owned by ``owner``."""
    import errno
    import re

    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE, None)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID
        for opt in fields[5].split(","):
            flags |= _MOUNT_OPTS.get(opt, 0)
        try:
            _mount(libc, None, point, None, flags, None)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: mount point hidden under another mount
                raise
    for hidden in _HIDDEN_DIRS:
        if os.path.isdir(hidden) and not os.path.islink(hidden):
            _mount(libc, "tmpfs", hidden, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=1m,mode=0755")
            if workdir.startswith(hidden.rstrip("/") + "/"):
                os.makedirs(workdir)
            _mount(libc, None, hidden, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                   None)
    _mount(libc, "tmpfs", workdir, "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={size_mb}m,nr_inodes=4096,mode=0700,uid={owner},gid={owner}")


def _exec_program(cfg: dict, libc) -> None:
    """In the forked child: limits, drop privileges, exec the program. Never returns."""
    import fcntl
    import resource

    status_fd = fcntl.fcntl(cfg["status_fd"], fcntl.F_DUPFD_CLOEXEC, 64)  # closed by exec
    try:
        token_fd = fcntl.fcntl(cfg["token_fd"], fcntl.F_DUPFD_CLOEXEC, 64)
        os.dup2(token_fd, TOKEN_FD)
        os.closerange(TOKEN_FD + 1, status_fd)
        os.closerange(status_fd + 1, 1 << 16)
        os.chdir(cfg["workdir"])
        if cfg["isolation"] != "namespaces":
            os.setpgid(0, 0)  # so that 'none' mode can kill the program's whole group
        mem = cfg["memory_mb"] << 20
        limits = {resource.RLIMIT_CORE: 0, resource.RLIMIT_AS: mem, resource.RLIMIT_DATA: mem,
                  resource.RLIMIT_FSIZE: cfg["max_file_mb"] << 20, resource.RLIMIT_NOFILE: cfg["max_open_files"]}
        if cfg["isolation"] != "none":  # without a fresh uid it would count all of the user's processes
            limits[resource.RLIMIT_NPROC] = cfg["max_procs"]
        for res, value in limits.items():
            resource.setrlimit(res, (value, value))
        # per process, a backstop of the group's budget that the supervisor enforces: SIGXCPU, then SIGKILL
        rlimit_cpu = int(cfg["cpu_s"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (rlimit_cpu, rlimit_cpu + 1))
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])
        elif cfg["isolation"] == "namespaces":  # root of a user namespace: give up every capability
            for cap in range(64):
                if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    break  # EINVAL past the last capability
            _check(libc, libc.prctl(_PR_SET_SECUREBITS, _SECBIT_NOROOT_AND_LOCKED, 0, 0, 0), "securebits")
        _check(libc, libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": cfg["workdir"], "TMPDIR": cfg["workdir"],
               "LANG": "C.UTF-8"}
        os.execve(cfg["python"], [cfg["python"], "-I", "-B", "program.py"], env)
    except BaseException as exc:
        os.write(status_fd, (json.dumps({"error": f"cannot start the program: {exc!r}"}) + "\n").encode())
    os._exit(INIT_ERROR_EXIT)


def _kill_uid(uid: int) -> None:
    pid = os.fork()
    if pid == 0:  # as the sandbox uid, kill(-1) reaches exactly the sandbox's processes
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def _kill_leftovers(cfg: dict, child: int) -> None:
    """Kill and reap what the program left running (as PID 1 of a namespace, exiting does this).

    In the other modes this process is a child subreaper, so the program's orphans are its children.
    """
    if cfg["isolation"] == "namespaces":
        return
    for _ in range(200):
        if cfg["isolation"] == "uid":
            _kill_uid(cfg["uid"])
        else:  # 'none': the program's process group (escapes via setsid are not caught)
            try:
                os.killpg(child, signal.SIGKILL)
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.01)


def _stat_fields(pid: str) -> list[str]:
    """Fields of /proc/PID/stat after the command name (index 0 = state, 2 = pgrp, 11-14 = CPU ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _in_sandbox(cfg: dict, pid: str, child: int) -> bool:
    if cfg["isolation"] == "namespaces":  # /proc shows only the namespace's processes; 1 is this bootstrap
        return pid != "1"
    if cfg["isolation"] == "uid":
        return os.stat(f"/proc/{pid}").st_uid == cfg["uid"]
    return int(_stat_fields(pid)[2]) == child  # 'none': the program's process group


def _group_cpu_s(pids: list[str]) -> float:
    """CPU seconds (user + system) used so far by the program and every process it started: the live ones
    (with their reaped children) from /proc, the reaped ones from this process's own child rusage."""
    import resource

    ticks = 0
    for pid in pids:
        try:
            ticks += sum(int(v) for v in _stat_fields(pid)[11:15])
        except (OSError, ValueError, IndexError):  # exited meanwhile
            continue
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ticks / os.sysconf("SC_CLK_TCK") + reaped.ru_utime + reaped.ru_stime


def _runqueue_wait_s(pid: str) -> float:
    """Seconds ``pid`` has spent runnable but waiting for a CPU (/proc/PID/schedstat), 0 where unknown."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _sandbox_pids(cfg: dict, child: int) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and _in_sandbox(cfg, pid, child):
                out.append(pid)
        except (OSError, ValueError, IndexError):  # exited meanwhile
            continue
    return out


def _supervise(cfg: dict, child: int) -> tuple[int | None, dict]:
    """Wait for the program, reaping orphans, and stop it when its process group's CPU time passes
    ``cpu_s`` or its wall time, less the time its processes waited for a CPU, passes ``wall_s`` (the backstop
    for programs that sleep or block; waits of parallel processes add up, which only makes it more generous).
    Returns (wait status or None, what to report besides how it ended)."""
    start, pause, used = time.monotonic(), 0.001, 0.0
    waits: dict[str, float] = {}  # pid -> its run-queue wait so far (kept after it exits)
    while True:
        try:
            while True:  # as PID 1 we also reap the program's orphans
                pid, st = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if pid == child:
                    return st, {"cpu_s": _group_cpu_s(_sandbox_pids(cfg, child)), "wall_s": time.monotonic() - start,
                                "wait_s": sum(waits.values())}
        except ChildProcessError:
            return None, {"error": "the program vanished"}
        pids = _sandbox_pids(cfg, child)
        used = _group_cpu_s(pids)
        waits.update({pid: _runqueue_wait_s(pid) for pid in pids})
        waited = sum(waits.values())
        elapsed = time.monotonic() - start
        over = "cpu" if used > cfg["cpu_s"] else "wall" if elapsed - waited > cfg["wall_s"] else None
        if over:
            return None, {"timeout": over, "cpu_s": used, "wall_s": elapsed, "wait_s": waited}
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _bootstrap(cfg_path: str) -> None:
    with open(cfg_path) as f:
        cfg = json.load(f)

    def report(**fields: object) -> None:
        os.write(cfg["status_fd"], (json.dumps(fields) + "\n").encode())

    try:
        libc = _libc()
        with open(cfg["program"], "rb") as f:
            program = f.read()
        if cfg["isolation"] == "namespaces":
            # room for a few files of the maximum size; a single bigger one hits RLIMIT_FSIZE first
            _lock_filesystem(libc, cfg["workdir"], 4 * cfg["max_file_mb"], cfg["uid"] or 0)
        with open(os.path.join(cfg["workdir"], "program.py"), "wb") as f:
            f.write(program)
    except Exception as exc:
        report(error=f"sandbox set-up failed: {exc!r}")
        os._exit(INIT_ERROR_EXIT)
    if cfg["isolation"] != "namespaces":
        _check(libc, libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "child subreaper")
    child = os.fork()
    if child == 0:
        _exec_program(cfg, libc)
    wait_status, usage = _supervise(cfg, child)
    if wait_status is None:
        report(**usage)
    elif os.WIFSIGNALED(wait_status):
        report(signal=os.WTERMSIG(wait_status), **usage)
    else:
        report(exit=os.WEXITSTATUS(wait_status), **usage)
    _kill_leftovers(cfg, child)
    os._exit(0)


if __name__ == "__main__":
    _bootstrap(sys.argv[1])
