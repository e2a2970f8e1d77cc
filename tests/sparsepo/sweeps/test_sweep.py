"""tune/sweep.py as users run it: a sweep whose driver is SIGKILLed mid-way, then continued with --resume."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[3]
SWEEP = REPO / "tune" / "sweep.py"
# One short trial, then two long ones: the driver is killed while a long one is half-way.
RUNS = {"short": (0.1, 3), "long1": (0.2, 10), "long2": (0.3, 10)}


def sweep_main():
    spec = importlib.util.spec_from_file_location("sweep_cli", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def sweep_cmd(tmp_path: Path, *extra: str) -> list[str]:
    space = tmp_path / "space.yaml"
    variants = "".join(f"    {n}: {{loss.beta: {b}, optim.max_steps: {s}}}\n" for n, (b, s) in RUNS.items())
    space.write_text("run_len:\n  variants:\n" + variants)
    return [
        sys.executable, str(SWEEP), "--config", "configs/smoke/sparsepo.yaml", "--space", str(space),
        "--name", "exp", "--storage-path", str(tmp_path / "runs"), "--max-concurrent-trials", "1", "--num-cpus", "4",
        "model.name=tiny-llama", "data.path=offline:review-pairs", "data.limit=16", "data.max_length=64",
        "data.max_prompt_length=40", "optim.batch_size=2", "run.chunk_size=64",
        "run.save_every=1", "--metric", "rewards/accuracy", "--mode", "max", *extra,
    ]  # fmt: skip


def trial_states(exp: Path) -> dict[str, str]:
    """trial_id -> status as last saved in the experiment state ({} while there is none yet)."""
    from ray.tune import ExperimentAnalysis

    try:
        return {t.trial_id: t.status for t in ExperimentAnalysis(str(exp)).trials}
    except Exception:  # not written yet, or caught mid-write
        return {}


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver's process group, then whatever Ray started under it in its own sessions."""
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for p in tree:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def test_missing_space_is_a_usage_error(capsys):
    assert sweep_main()(["--config", "configs/smoke/sparsepo.yaml"]) == 2
    assert "--space: a search space is required" in capsys.readouterr().err


def reported_steps(exp: Path) -> dict[str, int]:
    """trial folder name -> rows in its result.json (what Tune has logged so far)."""
    return {p.parent.name: len(p.read_text().splitlines()) for p in exp.glob("*/result.json")}


def test_resume_after_driver_kill_keeps_finished_trials_and_completes_the_rest(tmp_path):
    exp = tmp_path / "runs" / "exp"
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(sweep_cmd(tmp_path), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 420
        while True:  # a trial finished (as Tune's saved state says) and a long one is half-way
            states, rows = trial_states(exp), reported_steps(exp)
            midway = [d for d, n in rows.items() if "long" in d and 0 < n < 8]
            if "TERMINATED" in states.values() and midway:
                break
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(0.5)
    finally:
        kill_tree(proc)
    finished = {}
    for tid in (t for t, s in states.items() if s == "TERMINATED"):
        (trial_dir,) = exp.glob(f"*_{tid}_*")
        files = {p.relative_to(trial_dir): p.read_bytes() for p in sorted(trial_dir.rglob("*")) if p.is_file()}
        finished[tid] = (trial_dir, files)
    assert len(finished) < len(RUNS)  # killed with work left to do

    done = subprocess.run(sweep_cmd(tmp_path, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "best trial:" in done.stdout and f"results table: {exp}/results.csv" in done.stdout
    assert "A run snapshot was found" in done.stdout + done.stderr  # Ray Train picked up the cut run

    final = trial_states(exp)
    assert set(states) <= set(final) and len(final) == len(RUNS)
    assert set(final.values()) == {"TERMINATED"}
    # Finished trials were not rerun: every file of theirs (progress, events, Train checkpoints) is as it was.
    for trial_dir, files in finished.values():
        now = {p.relative_to(trial_dir): p.read_bytes() for p in sorted(trial_dir.rglob("*")) if p.is_file()}
        assert now == files
    table = pd.read_csv(exp / "results.csv")
    assert set(table["trial_id"]) == set(final)
    for name, (beta, steps) in RUNS.items():
        mine = table[table["run_len"] == name]
        assert list(mine["step"]) == list(range(1, steps + 1)) and (mine["loss.beta"] == beta).all()
    # The half-way trial continued from its Train checkpoint: the steps saved there were replayed to Tune
    # (without a checkpoint path), the later ones came from the resumed run (each with its checkpoint).
    (cut,) = midway
    cut_rows = table[table["trial_path"].str.endswith(cut)]
    replayed = cut_rows["checkpoint_path"].isna()
    assert 1 <= replayed.sum() < len(cut_rows) and not replayed.iloc[replayed.sum():].any()


def test_check_validates_models_and_data_and_starts_nothing(tmp_path, capsys):
    args = sweep_cmd(tmp_path, "--check")[2:]  # the flags, without the interpreter and script
    assert sweep_main()(args) == 0
    assert "check passed" in capsys.readouterr().out and not (tmp_path / "runs").exists()
    bad = [a if a != "data.path=offline:review-pairs" else f"data.path={tmp_path / 'nope.jsonl'}" for a in args]
    assert sweep_main()(bad) == 2
    assert "nope.jsonl" in capsys.readouterr().err
