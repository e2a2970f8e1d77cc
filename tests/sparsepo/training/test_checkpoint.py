"""Checkpoint staging: a killed worker's staged checkpoint is removed by the next run, a live one's is kept."""

import os
import socket
import subprocess
import sys
import textwrap

from sparsepo.training.checkpoint import STAGING_PREFIX, remove_stale_staging, staging_dir


def proc_pid_gone() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_staged_checkpoint_of_a_killed_process_is_removed_and_a_live_one_kept(tmp_path):
    # A real process stages a checkpoint and is SIGKILLed inside the `with`, as Ray kills a stopped trial.
    child = textwrap.dedent(
        f"""
        import os, signal, sys
        from sparsepo.training.checkpoint import staging_dir
        with staging_dir(7, root={str(tmp_path)!r}) as d:
            open(os.path.join(d, "train_state.pt"), "wb").write(b"x" * 1000)
            print(d, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9
    killed = proc.stdout.strip()
    assert os.path.basename(killed).startswith(f"{STAGING_PREFIX}") and os.path.exists(f"{killed}/train_state.pt")
    unrelated = tmp_path / f"{STAGING_PREFIX}{socket.gethostname()}-notapid-3-x"
    other_host = tmp_path / f"{STAGING_PREFIX}another-host-{proc_pid_gone()}-3-x"  # a container sharing /tmp
    unrelated.mkdir()
    other_host.mkdir()
    with staging_dir(3, root=str(tmp_path)) as live:
        assert remove_stale_staging(str(tmp_path)) == [killed]
        assert not os.path.exists(killed) and os.path.exists(live) and unrelated.exists() and other_host.exists()
    assert not os.path.exists(live)  # the `with` itself cleans up a live run's folder


def test_checkpoint_folders_ray_never_registered_are_not_complete(tmp_path):
    from sparsepo.training.checkpoint import complete_checkpoints

    (tmp_path / "checkpoint_2026-01-01_00-00-00.000000").mkdir()  # a folder, but no checkpoint_manager_snapshot.json
    (tmp_path / "checkpoint_2026-01-01_00-00-00.000000" / "metrics.jsonl").write_text('{"step": 3}\n')
    assert complete_checkpoints(str(tmp_path)) == []
    assert complete_checkpoints(str(tmp_path / "missing")) == []
