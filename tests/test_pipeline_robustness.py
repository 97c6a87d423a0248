"""`dipir run` when things go wrong outside a task: a worker that cannot start stops the run in one
line (not an endless, silent stream of fresh actors); a SIGTERM to the whole process group (as
`timeout` and batch schedulers send, killing the local Ray too) still writes results.parquet and
exits 130 in seconds; a commit killed between its two renames loses no finished result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.cli import dipir_env, start_dipir
from helpers.pipeline import TINY_RENDER

from dipir.errors import DipirError
from dipir.evaluation.version import EVALUATION_VERSION
from dipir.scene.synthetic import tiny_scenes
from pipelines import store
from pipelines.worker import TaskWorker

TESTS = Path(__file__).resolve().parent
EST = "helpers.pipeline:CountingEstimator"


def _suite(tmp: Path, n_scenes: int, delay: float = 0.0) -> Path:
    scenes = tiny_scenes(tmp / "scenes", n_scenes)
    suite = tmp / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "robust", "datasets": [{"kind": "scenes", "path": str(scenes)}], "methods": [EST],
        "presets": {EST: ["dim", "bright"]}, "options": {EST: {"counter": str(tmp / "count.txt"), "delay": delay}},
        "render": TINY_RENDER}))
    return suite


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"`dipir run` still running after {timeout} s:\n{out[-1000:]}\n{err[-2000:]}")


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


# ---------------------------------------------------------------------------------------------
# A worker that cannot start


def test_worker_setup_error_stops_the_run_in_one_line(tmp_path):
    """A worker's set-up fails the same way for every task: the run stops with the error and the
    node, exit 2 (it used to start fresh actors forever, printing nothing)."""
    run = tmp_path / "run"
    proc = start_dipir(["run", str(_suite(tmp_path, 1)), "--out", str(run), "--workers", "1", "--no-progress"],
                  dipir_env(DIPIR_MITSUBA_VARIANT="bogus_variant"))
    out, err = _finish(proc, 90)
    assert proc.returncode == 2, (out, err[-3000:])
    lines = _errors(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "cannot set up a worker" in lines[0] and "'bogus_variant' is unavailable" in lines[0], lines[0]
    assert "Ray node " in lines[0], lines[0]
    assert pd.read_parquet(run / "results.parquet").empty


class DiesWhileStarting(TaskWorker):
    """An actor whose constructor fails before TaskWorker's own set-up can catch anything (as when
    its process dies while importing): Ray does not restart it."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("died while starting")


@pytest.fixture
def ray_session(monkeypatch, tmp_path_factory):
    ray = pytest.importorskip("ray")
    # Workers inherit the environment of the Ray processes: this module must be importable there.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    os.environ.setdefault("RAY_TMPDIR", str(tmp_path_factory.mktemp("ray")))
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_workers_that_die_while_starting_stop_the_run(ray_session, tmp_path, monkeypatch):
    """The backstop: a slot whose fresh actors keep dying before their first `hello` stops the run."""
    from pipelines import worker
    from pipelines.runner import run_suite
    from pipelines.suite import load_suite

    monkeypatch.setattr(worker, "TaskWorker", DiesWhileStarting)

    def give_up(signum, frame):
        raise TimeoutError("run_suite still starting fresh actors after 60 s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(60)
    try:
        with pytest.raises(DipirError, match="4 workers in a row died while starting") as err:
            run_suite(load_suite(_suite(tmp_path, 1)), tmp_path / "run", workers=1, progress=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert "RuntimeError: died while starting" in str(err.value) and "\n" not in str(err.value), err.value
    assert pd.read_parquet(tmp_path / "run" / "results.parquet").empty


# ---------------------------------------------------------------------------------------------
# SIGTERM to the whole process group


def test_sigterm_to_the_process_group_writes_results_and_exits_130(tmp_path):
    """`timeout` and batch schedulers signal every process of the job, the local Ray's among them:
    the run still writes results.parquet of what finished and exits 130, in seconds (it used to wait
    on Ray's dead GCS until Ray killed it, exit 1, no results.parquet)."""
    run = tmp_path / "run"
    proc = start_dipir(["run", str(_suite(tmp_path, 4, delay=1.5)), "--out", str(run), "--workers", "2",
                   "--no-progress"], dipir_env())
    tasks = run / "tasks"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (tasks.is_dir() and any(tasks.iterdir())):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = _finish(proc, 45)
    assert proc.returncode == 130, (out, err[-3000:])
    assert time.time() - t0 < 30
    assert "interrupted" in err and "resume" in err, err[-3000:]
    df = pd.read_parquet(run / "results.parquet")
    assert 0 < len(df) < 8 and (df.status == "done").all()
    assert set(df.task_id) == {p.name for p in tasks.iterdir()}


# ---------------------------------------------------------------------------------------------
# A commit killed between its two renames


def _result(tid: str, status: str) -> dict:
    return {"task_id": tid, "dataset": "d", "scene_id": "s", "method": "m", "preset": None, "seed": 0,
            "status": status, "metrics": {"rmse_full": 0.5 if status == "done" else None},
            "evaluation": EVALUATION_VERSION if status == "done" else None}


def _folder(path: Path, tid: str, status: str, artifact: bytes) -> None:
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps(_result(tid, status)))
    (path / "envmap.exr").write_bytes(artifact)


def test_a_commit_killed_between_its_renames_loses_no_finished_result(tmp_path):
    """commit_task moves a task's folder aside (RUN/.staging/old-<id>-…) before renaming the new one
    into place; a process killed in between left the finished result only there, and the next run's
    start swept it away."""
    run = tmp_path / "run"
    store.init_run(run, {"name": "x"}, {})
    staging = run / ".staging"
    _folder(staging / "old-t0-1a2b3c4d", "t0", "done", b"t0")  # killed between the renames: no tasks/t0
    _folder(staging / "old-t1-1a2b3c4d", "t1", "done", b"t1")  # killed after them: tasks/t1 failed this time
    _folder(run / "tasks" / "t1", "t1", "failed", b"")
    _folder(staging / "old-t2-1a2b3c4d", "t2", "failed", b"t2")  # killed after them: tasks/t2 done this time
    _folder(run / "tasks" / "t2", "t2", "done", b"new")
    _folder(staging / "t3-1a2b3c4d", "t3", "done", b"t3")  # an attempt not committed: swept as before

    store.init_run(run, {"name": "x"}, {})  # the next run's start

    assert store.finished(run) == {"t0": "done", "t1": "failed", "t2": "done"}
    assert (run / "tasks" / "t0" / "envmap.exr").read_bytes() == b"t0"
    assert (run / "replaced" / "t1" / "envmap.exr").read_bytes() == b"t1"  # as commit_task would keep it
    assert (run / "tasks" / "t2" / "envmap.exr").read_bytes() == b"new"
    assert list(staging.iterdir()) == []
