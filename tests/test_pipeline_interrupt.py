"""Ctrl-C: `dipir run` stops cleanly (exit 130, results.parquet of what finished), and running the
same command again completes the suite without redoing finished tasks. Real processes, real SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.pipeline import TINY_RENDER, count_lines

from dipir.scene.synthetic import tiny_scenes

TESTS = Path(__file__).resolve().parent
EST = "helpers.pipeline:CountingEstimator"


def _dipir(args: list[str], env: dict) -> subprocess.Popen:
    code = "from dipir.cli.main import main; main()"
    # SIGINT back to its default in the child: a pytest started by a non-interactive shell in the
    # background inherits SIGINT ignored, and so would `dipir run` (Python then installs no handler).
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=TESTS.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.slow  # ~30 s each; smoke: test_optimize.py's Ctrl-C tests
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_cleanly_then_resumes(tmp_path, sig):
    scenes = tiny_scenes(tmp_path / "scenes", 4)
    counter = tmp_path / "count.txt"
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "interrupt", "datasets": [{"kind": "scenes", "path": str(scenes)}], "methods": [EST],
        "presets": {EST: ["dim", "bright"]}, "options": {EST: {"counter": str(counter), "delay": 1.5}},
        "render": TINY_RENDER}))
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    env.pop("DIPIR_TEST_CRASH_ONCE", None)
    args = ["run", str(suite), "--out", str(run), "--workers", "2", "--no-progress"]

    proc = _dipir(args, env)
    deadline = time.time() + 120
    tasks = run / "tasks"
    while time.time() < deadline and proc.poll() is None and not (tasks.is_dir() and any(tasks.iterdir())):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err and "resume" in err
    first = pd.read_parquet(run / "results.parquet")
    assert 0 < len(first) < 8 and (first.status == "done").all()

    proc = _dipir(args, env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out, err)
    assert f"{len(first)} already finished" in out
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 8 and df.task_id.is_unique and (df.status == "done").all()
    # Tasks interrupted mid-way ran again; finished ones did not.
    assert 8 <= count_lines(counter) <= 8 + 2
