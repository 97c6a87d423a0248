"""Runs on a local Ray with 2 CPU workers: completion, resume, fault injection, bad scenes.

One Ray session serves the whole module (Ray start-up is slow on 2 cores). The estimator is the
test's CountingEstimator (real renders through dipir.evaluation.evaluate), so executions are counted in a
file, not inferred from timing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.pipeline import TINY_RENDER, count_lines

from dipir.scene.synthetic import tiny_scenes
from pipelines.runner import CRASH_ENV, run_suite
from pipelines.store import code_version
from pipelines.suite import load_suite

TESTS = Path(__file__).resolve().parent
EST = "helpers.pipeline:CountingEstimator"
COLUMNS = ["task_id", "dataset", "scene_id", "method", "preset", "seed", "status", "error", "seconds"]


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray = pytest.importorskip("ray")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", CRASH_ENV)}
    # Workers inherit the environment of the Ray processes: make the test estimator importable.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_TMPDIR", str(tmp_path_factory.mktemp("ray")))
    os.environ.pop(CRASH_ENV, None)  # read by the driver per run; one test sets it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes"), 4)


def _suite(tmp: Path, scenes: Path, counter: Path, datasets=None, name="t") -> Path:
    data = {
        "name": name,
        "datasets": datasets or [{"kind": "scenes", "path": str(scenes), "name": "synthetic"}],
        "methods": [EST, "constant"],
        "presets": {EST: ["dim", "bright"]},
        "options": {EST: {"counter": str(counter)}},
        "seeds": [0],
        "render": TINY_RENDER,
    }
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _results(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "results.parquet")


def test_suite_completes_then_resumes(ray_session, scenes, tmp_path):
    counter = tmp_path / "count.txt"
    suite = load_suite(_suite(tmp_path, scenes, counter))
    run = tmp_path / "run"
    s = run_suite(suite, run, workers=2, progress=False)
    # 4 scenes x (2 presets of the counting estimator + constant) = 12 tasks
    assert s.total == 12 and s.executed == 12 and s.workers == 2
    df = _results(run)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert len(df) == 12 and df.task_id.is_unique
    assert (df.status == "done").all(), df[["method", "error"]]
    assert count_lines(counter) == 8  # the counting estimator ran once per task of its own
    assert len({line.split()[1] for line in counter.read_text().splitlines()}) == 2  # on two workers
    metric_cols = [c for c in df.columns if c.startswith("metric.")]
    assert metric_cols, "no metric columns"
    for name in ("composite", "envmap", "gt_composite", "background"):
        for rel in df[f"artifact.{name}"]:
            assert (run / rel).is_file(), rel
    assert df["metric.rmse_full"].notna().all()
    res = json.loads((run / "tasks" / df.task_id[0] / "result.json").read_text())
    assert res["status"] == "done" and res["condition"] == "day" and res["attempts"] == 1
    assert (run / "spec.yaml").is_file() and (run / "metrics_meta.json").is_file()
    assert json.loads((run / "run.json").read_text())["ray"]
    # Each result names the code version that computed it (a resumed run keeps older ones' results).
    assert (df.git == code_version()).all() if code_version() else df.git.isna().all()

    # Resume: nothing runs again.
    s2 = run_suite(load_suite(_suite(tmp_path, scenes, counter)), run, workers=2, progress=False)
    assert s2.executed == 0 and s2.already == 12
    assert count_lines(counter) == 8
    # Delete one task folder: exactly that task runs.
    victim = df[df.method == EST].task_id.iloc[0]
    shutil.rmtree(run / "tasks" / victim)
    s3 = run_suite(suite, run, workers=2, progress=False)
    assert s3.executed == 1 and count_lines(counter) == 9
    df3 = _results(run)
    assert len(df3) == 12 and df3.task_id.is_unique and (df3.status == "done").all()


@pytest.mark.slow  # ~8 s; smoke: test_suite_completes_then_resumes
def test_worker_killed_mid_task(ray_session, scenes, tmp_path, monkeypatch):
    counter = tmp_path / "count.txt"
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ENV, str(marker))
    run = tmp_path / "run"
    s = run_suite(load_suite(_suite(tmp_path, scenes, counter)), run, workers=2, progress=False)
    assert marker.is_file(), "the fault was not injected"
    crashed = marker.read_text()
    assert s.retried == 1
    df = _results(run)
    assert len(df) == 12 and df.task_id.is_unique and (df.status == "done").all(), df[["status", "error"]]
    res = json.loads((run / "tasks" / crashed / "result.json").read_text())
    assert res["attempts"] == 2 and res["status"] == "done"
    assert not list((run / ".staging").iterdir())  # the dead attempt's staging folder is cleared at the end


@pytest.mark.slow  # ~11 s; smoke: test_worker_killed_mid_task
def test_task_that_always_kills_its_worker(ray_session, scenes, tmp_path):
    data = {"name": "crash", "datasets": [{"kind": "scenes", "path": str(scenes), "scenes": ["scene0", "scene1"]}],
            "methods": ["helpers.pipeline:CrashingEstimator", "constant"], "render": TINY_RENDER, "max_attempts": 2}
    (tmp_path / "crash.yaml").write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    s = run_suite(load_suite(tmp_path / "crash.yaml"), run, workers=2, progress=False)
    assert s.retried == 2  # each crashing task: 2 attempts, the second one final
    df = _results(run).set_index("method")
    assert (df.loc["constant"].status == "done").all()
    bad = df.loc["helpers.pipeline:CrashingEstimator"]
    assert len(bad) == 2 and (bad.status == "failed").all()
    assert bad.error.str.startswith("worker died on each of 2 attempts").all(), bad.error.tolist()
    res = json.loads((run / "tasks" / bad.task_id.iloc[0] / "result.json").read_text())
    assert res["attempts"] == 2 and res["traceback"]


def test_bad_scenes_become_failed_rows(ray_session, scenes, tmp_path):
    from dipir.data import synth_polyhaven

    hdris = tmp_path / "hdris"
    synth_polyhaven.write_hdris(hdris, count=1, seed=0)
    good_hdri = sorted(p.name for p in hdris.iterdir() if p.suffix in (".hdr", ".exr"))[0]
    wdir = tmp_path / "waymo"
    wdir.mkdir()
    (wdir / "corrupt.tfrecord").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage-not-a-record")
    datasets = [
        {"kind": "scenes", "path": str(scenes), "scenes": ["scene0"], "name": "synthetic"},
        {"kind": "polyhaven", "path": str(hdris), "hdris": [good_hdri, "missing_sky.hdr"], "width": 32,
         "height": 32},
        {"kind": "waymo", "path": str(wdir), "frames": [0], "cameras": ["FRONT"], "width": 32},
    ]
    counter = tmp_path / "count.txt"
    run = tmp_path / "run"
    s = run_suite(load_suite(_suite(tmp_path, scenes, counter, datasets=datasets)), run, workers=2, progress=False)
    df = _results(run)
    assert len(df) == s.total == 4 * 3
    bad = df[df.scene_id.str.startswith(("missing_sky", "corrupt"))]
    assert len(bad) == 6 and (bad.status == "failed").all()
    for err in bad[bad.scene_id.str.startswith("missing_sky")].error:
        assert "missing_sky.hdr" in err and "not found" in err
    for err in bad[bad.scene_id.str.startswith("corrupt")].error:
        assert "corrupt.tfrecord" in err
    good = df[~df.index.isin(bad.index)]
    assert (good.status == "done").all(), good[["scene_id", "error"]]
    res = json.loads((run / "tasks" / bad.task_id.iloc[0] / "result.json").read_text())
    assert res["traceback"] and res["attempts"] == 1

    # Through the CLI: a plain rerun executes nothing; --retry-failed runs exactly the 6 failed ones;
    # both exit 3 (some tasks of the suite failed).
    from typer.testing import CliRunner

    from dipir.cli.main import app

    n = count_lines(counter)
    suite_file = tmp_path / "t.yaml"
    out = CliRunner().invoke(app, ["run", str(suite_file), "--out", str(run), "--no-progress"])
    assert out.exit_code == 3, out.output
    assert "12 already finished" in out.output and count_lines(counter) == n
    out = CliRunner().invoke(app, ["run", str(suite_file), "--out", str(run), "--no-progress", "--retry-failed"])
    assert out.exit_code == 3, out.output
    assert "6 already finished, 0 done, 6 failed" in out.output, out.output
    df2 = _results(run)
    assert len(df2) == 12 and (df2.set_index("task_id").status == df.set_index("task_id").status).all()
