"""The run folder as a store: one schema (pipelines/schema.py), one writer at a time (an fcntl
lock), completion = a schema-valid result.json, results.parquet = the tasks of the suite as it
stands, `module:Class` methods that must be estimator classes, `dipir run`'s exit status, and a
report that shows the git hash and GPUs the run wrote."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.cli import dipir_env, start_dipir
from helpers.pipeline import TINY_RENDER, count_lines

from dipir.errors import DipirError
from dipir.evaluation.version import EVALUATION_VERSION
from dipir.scene.synthetic import tiny_scenes
from pipelines import schema, store
from pipelines.suite import load_suite

TESTS = Path(__file__).resolve().parent
EST = "helpers.pipeline:CountingEstimator"


def _result(tid: str, status: str = "done", **kw) -> dict:
    return {"task_id": tid, "dataset": "d", "scene_id": f"s-{tid}", "method": "m", "preset": None, "seed": 0,
            "status": status, "metrics": {"rmse_full": 0.5 if status == "done" else None},
            "evaluation": EVALUATION_VERSION if status == "done" else None, **kw}


def _commit(run: Path, tid: str, status: str = "done") -> Path:
    return store.commit_task(run, store.staging_dir(run, tid), _result(tid, status))


# ---------------------------------------------------------------------------------------------
# The schema


def test_task_result_schema_accepts_whole_results_and_names_what_is_wrong():
    res = schema.TaskResult.from_dict(_result("t0", artifacts={"composite": "composite.png"}, seconds=1))
    assert res.attempts == 1 and res.node is None and res.actor is None  # optional (cluster) keys
    assert schema.TaskResult.from_dict(res.to_dict()) == res
    row = schema.row(res)
    assert list(row)[:len(schema.ROW_COLUMNS)] == list(schema.ROW_COLUMNS)
    assert row["artifact.composite"] == "tasks/t0/composite.png" and row["metric.rmse_full"] == 0.5
    bad = [({k: v for k, v in _result("t").items() if k != "status"}, "status", "missing key"),
           ({**_result("t"), "status": "ok"}, "status", "must be one of done, failed, skipped"),
           ({**_result("t"), "seed": "0"}, "seed", "expected int"),
           ({**_result("t"), "seed": True}, "seed", "expected int"),
           ({**_result("t"), "preset": 3}, "preset", "expected str or null"),
           ({**_result("t"), "metrics": {"rmse": "x"}}, "metrics.rmse", "expected float or null"),
           ({**_result("t"), "metrics": []}, "metrics", "expected an object"),
           ({**_result("t"), "colour": 1}, "colour", "unknown key")]
    for data, field, message in bad:
        with pytest.raises(schema.SchemaError) as err:
            schema.TaskResult.from_dict(data)
        assert err.value.field == field and message in err.value.message, (field, str(err.value))
    with pytest.raises(schema.SchemaError):
        schema.TaskResult.from_dict(["not", "an", "object"])


def test_run_info_and_metric_meta_round_trip():
    info = schema.RunInfo.from_dict(store.run_info())
    assert info.python and info.packages and isinstance(info.gpus, list) and info.nodes == []
    assert set(info.to_dict()) == {f for f in schema.RunInfo.__dataclass_fields__}
    gpus = [{"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "550.54"}] * 2
    assert schema.RunInfo(gpus=gpus).gpu_summary() == "2 × NVIDIA H200 (143771 MiB, driver 550.54)"
    assert schema.RunInfo().gpu_summary() == "none"
    with pytest.raises(schema.SchemaError) as err:
        schema.RunInfo.from_dict({"gpu": None})  # the key the report used to read
    assert err.value.field == "gpu"
    from pipelines.execute import metrics_meta

    meta = schema.parse_metrics_meta(metrics_meta())
    assert meta["rmse_full"].group == "composite" and meta["psnr_full"].lower_is_better is False
    assert meta["sphere_mirror_nrmse"].group == "lighting_per_sphere"
    assert meta["light_dir_err_deg"].group == "lighting" and meta["light_dir_err_deg"].description
    with pytest.raises(schema.SchemaError) as err:
        schema.parse_metrics_meta({"x": {"lower_is_better": "yes"}})
    assert err.value.field == "x.lower_is_better"


# ---------------------------------------------------------------------------------------------
# One writer per run folder


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    with store.run_lock(run) as previous:
        assert previous == {}
        holder = json.loads((run / schema.LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(DipirError) as err, store.run_lock(run):
            pass
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(err.value)
        assert str(run) in str(err.value)
    with store.run_lock(run) as previous:  # let go cleanly: free, nothing to take over
        assert previous == {}


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    code = ("import sys, time; from pathlib import Path; from pipelines import store\n"
            "with store.run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DipirError, match=f"pid {proc.pid} "), store.run_lock(run):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with store.run_lock(run) as previous:
        assert previous["pid"] == proc.pid and previous["host"] == socket.gethostname()


def test_worker_of_a_run_that_lost_the_folder_cannot_commit(tmp_path):
    # A killed run's Ray workers outlive it by a second or more: once another run holds the
    # folder, what they finish is dropped, and their staging folder with it.
    run = tmp_path / "run"
    with store.run_lock(run):
        first = store.lock_token(run)
        assert first and len(first) == 32
        store.init_run(run, {"name": "x"}, {})
        assert store.commit_task(run, store.staging_dir(run, "t0"), _result("t0"), token=first).is_dir()
    # The first run let go (or died); a second run holds the folder now.
    with store.run_lock(run):
        assert store.lock_token(run) not in (None, first)
        stage = store.staging_dir(run, "t1")
        (stage / "partial.png").write_bytes(b"x")
        with pytest.raises(store.LockLost, match="task t1's result is dropped") as err:
            store.commit_task(run, stage, _result("t1"), token=first)
        assert err.value.path == str(run / schema.LOCK)
        assert not stage.exists() and not (run / "tasks" / "t1").exists()
        assert store.commit_task(run, store.staging_dir(run, "t1"), _result("t1"), token=store.lock_token(run))
        # The end of a run: its own actors, not yet gone, can commit no more; the folder stays held.
        second = store.lock_token(run)
        store.revoke_workers(run)
        assert store.lock_token(run) not in (None, second)
        assert json.loads((run / schema.LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(store.LockLost):
            store.commit_task(run, store.staging_dir(run, "t3"), _result("t3"), token=second)
        with pytest.raises(DipirError, match="in use by"), store.run_lock(run):
            pass
    assert store.lock_token(run) is None  # let go cleanly: no run's worker may commit
    with pytest.raises(store.LockLost):
        store.commit_task(run, store.staging_dir(run, "t2"), _result("t2"), token=first)
    assert store.finished(run) == {"t0": "done", "t1": "done"}


# ---------------------------------------------------------------------------------------------
# Completion = a schema-valid result.json; stale task folders moved aside


def test_garbage_or_incomplete_result_counts_as_unfinished(tmp_path):
    run = tmp_path / "run"
    store.init_run(run, {"name": "x"}, {})
    for tid in ("t0", "t1", "t2", "t3"):
        _commit(run, tid)
    (run / "tasks" / "t1" / "result.json").write_bytes(b"\x00garbage{")
    (run / "tasks" / "t2" / "result.json").write_text(json.dumps({"task_id": "t2", "status": "done"}))
    (run / "tasks" / "t3" / "result.json").write_text(json.dumps(_result("t0")))  # another task's result
    (run / "status").mkdir()
    (run / "status" / "t1.done").touch()  # a marker of the old store layout overrides nothing
    assert store.finished(run) == {"t0": "done"}
    assert store.pending(["t0", "t1", "t2", "t3"], run, retry_failed=True) == ["t1", "t2", "t3"]
    df = pd.read_parquet(store.rebuild_results(run))
    assert df.task_id.tolist() == ["t0"]
    _commit(run, "t1")  # the rerun replaces the garbage folder
    assert store.finished(run) == {"t0": "done", "t1": "done"}
    with pytest.raises(schema.SchemaError):  # nothing that does not fit the schema is written
        store.commit_task(run, store.staging_dir(run, "t9"), {**_result("t9"), "status": "ok"})


def test_stale_task_folders_move_aside_and_back(tmp_path):
    run = tmp_path / "run"
    store.init_run(run, {"name": "x"}, {})
    for tid in ("a", "b", "c"):
        _commit(run, tid)
    assert store.set_aside_stale(run, ["a", "c"]) == (["b"], [])
    assert (run / "stale" / "b" / "result.json").is_file() and not (run / "tasks" / "b").exists()
    assert pd.read_parquet(store.rebuild_results(run)).task_id.tolist() == ["a", "c"]
    assert store.set_aside_stale(run, ["a", "b"]) == (["c"], ["b"])  # the suite names b again
    assert sorted(store.finished(run)) == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# Methods named module:Class


def _method_suite(tmp: Path, scenes: Path, method: str) -> Path:
    p = tmp / "m.yaml"
    p.write_text(yaml.safe_dump({"name": "m", "datasets": [{"kind": "scenes", "path": str(scenes)}],
                                 "methods": ["constant", method], "options": {method: {"command": "true"}},
                                 "render": TINY_RENDER}))
    return p


@pytest.mark.parametrize("method, message", [
    ("os:system", "'os:system' is not an estimator class"),
    ("helpers.pipeline:count_lines", "is not an estimator class"),
    ("helpers.pipeline:TINY_RENDER", "is not an estimator class"),
    ("helpers.pipeline:Nope", "has no attribute 'Nope'"),
    ("no_such_module_x:Est", "cannot import 'no_such_module_x'"),
    ("os.path;rm:x", "expected an estimator name or module:Class"),
])
def test_module_method_must_be_an_estimator_class(tmp_path, method, message):
    scenes = tiny_scenes(tmp_path / "scenes", 1)
    with pytest.raises(DipirError) as err:
        load_suite(_method_suite(tmp_path, scenes, method))
    assert err.value.field == "methods[1]" and message in str(err.value)


def test_os_system_refused_before_any_task_runs(tmp_path):
    scenes = tiny_scenes(tmp_path / "scenes", 1)
    marker = tmp_path / "ran"
    suite = tmp_path / "evil.yaml"
    suite.write_text(yaml.safe_dump({"name": "evil", "datasets": [{"kind": "scenes", "path": str(scenes)}],
                                     "methods": ["os:system"], "options": {"os:system": {"command": f"touch {marker}"}},
                                     "render": TINY_RENDER}))
    proc = start_dipir(["run", str(suite), "--out", str(tmp_path / "run"), "--no-progress"], dipir_env())
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    assert "methods[0]" in err and "not an estimator class" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# Real runs (local Ray, in this process)


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray = pytest.importorskip("ray")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), saved]))
    os.environ.setdefault("RAY_TMPDIR", str(tmp_path_factory.mktemp("ray")))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def _counting_suite(tmp: Path, datasets: list, counter: Path, name: str = "s") -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "datasets": datasets, "methods": [EST, "constant"],
                                 "options": {EST: {"counter": str(counter)}}, "render": TINY_RENDER}))
    return p


@pytest.mark.slow  # ~11 s with Ray; smoke: test_garbage_or_incomplete_result_counts_as_unfinished
def test_garbage_result_is_recomputed(ray_session, tmp_path):
    from pipelines.runner import run_suite

    scenes = tiny_scenes(tmp_path / "scenes", 2)
    counter = tmp_path / "count.txt"
    suite = load_suite(_counting_suite(tmp_path, [{"kind": "scenes", "path": str(scenes)}], counter))
    run = tmp_path / "run"
    s = run_suite(suite, run, workers=2, progress=False)
    assert s.total == 4 and s.final["done"] == 4 and s.exit_code() == 0
    df = pd.read_parquet(run / "results.parquet")
    victim = df[df.method == EST].task_id.iloc[0]
    (run / "tasks" / victim / "result.json").write_text('{"task_id": "' + victim + '", "status": "do')
    s = run_suite(suite, run, workers=2, progress=False)
    assert s.executed == 1 and s.already == 3 and count_lines(counter) == 3
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == s.total == 4 and df.task_id.is_unique and (df.status == "done").all()
    assert json.loads((run / "tasks" / victim / "result.json").read_text())["status"] == "done"


def test_fixed_input_leaves_one_row_per_task_and_the_report_shows_gpus_and_git(ray_session, tmp_path,
                                                                                monkeypatch):
    """A missing HDRI fails its tasks (exit 3); supplied, the rerun completes (exit 0) and
    results.parquet holds exactly the suite's tasks, the old failed ones moved to RUN/stale/."""
    from typer.testing import CliRunner

    from dipir.cli.main import app
    from dipir.data import synth_polyhaven
    from reports.build import ReportConfig, build_report

    gpus = [{"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "550.54.15"}]
    monkeypatch.setattr(store, "_gpus", lambda: gpus)  # what nvidia-smi reports on a GPU machine
    good, spare = synth_polyhaven.write_hdris(tmp_path / "made", count=2, seed=0)
    hdris = tmp_path / "hdris"
    hdris.mkdir()
    os.link(good, hdris / good.name)
    late = hdris / f"late{spare.suffix}"
    entry = {"kind": "polyhaven", "path": str(hdris), "hdris": [good.name, late.name], "width": 32, "height": 32}
    counter = tmp_path / "count.txt"
    suite = _counting_suite(tmp_path, [entry], counter)
    run = tmp_path / "run"
    args = ["run", str(suite), "--out", str(run), "--no-progress", "--workers", "2"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 3, out.output
    assert "2 task(s) failed" in out.output
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 4 and (df.status == "failed").sum() == 2
    assert df[df.status == "failed"].error.str.contains(late.name).all()

    os.link(spare, late)  # the missing input, supplied
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "2 task folder(s) of tasks no longer in the suite moved to" in out.output
    df = pd.read_parquet(run / "results.parquet")
    tasks = store.finished(run)
    assert len(df) == len(tasks) == 4 and df.task_id.is_unique and (df.status == "done").all()
    assert not df.duplicated(["dataset", "scene_id", "method", "seed"]).any()
    assert len(list((run / "stale").iterdir())) == 2  # the failed tasks of the suite as it was

    info = json.loads((run / "run.json").read_text())
    assert info["gpus"] == gpus
    md = (build_report(run, ReportConfig(formats=("md",))).report_dir / "report.md").read_text()
    assert "1 × NVIDIA H200 (143771 MiB, driver 550.54.15)" in md
    assert info["git"] and info["git"] in md
    assert late.name not in md.split("## Failed")[1]  # the old error is not in the report


# ---------------------------------------------------------------------------------------------
# Real `dipir run` processes on one folder


def _wait_for(cond, proc, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None and not cond():
        time.sleep(0.1)
    assert proc.poll() is None and cond(), proc.communicate()


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and the Ray processes it started
    except ProcessLookupError:
        pass


@pytest.mark.slow  # four `dipir run` processes, three of them start Ray
def test_concurrent_runs_one_writer_and_killed_writer_taken_over(tmp_path):
    scenes = tiny_scenes(tmp_path / "scenes", 3)
    counter = tmp_path / "count.txt"
    data = {"name": "first", "datasets": [{"kind": "scenes", "path": str(scenes)}], "methods": [EST],
            "presets": {EST: ["dim", "bright"]}, "options": {EST: {"counter": str(counter), "delay": 1.0}},
            "render": TINY_RENDER}
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(data))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**data, "name": "other", "methods": ["constant"], "presets": {},
                                     "options": {}}))
    run = tmp_path / "run"
    env = dipir_env()
    lock = run / ".lock"

    def holder() -> dict:
        try:
            return json.loads(lock.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    a = start_dipir(["run", str(first), "--out", str(run), "--workers", "2", "--no-progress"], env)
    try:
        _wait_for(lambda: holder().get("pid") == a.pid and (run / "spec.yaml").is_file(), a)
        spec = (run / "spec.yaml").read_text()
        b = start_dipir(["run", str(other), "--out", str(run), "--no-progress"], env)
        out, err = b.communicate(timeout=120)
        assert b.returncode == 2, (out, err)
        assert f"in use by pid {a.pid} on host {socket.gethostname()}" in err and "Traceback" not in err
        assert (run / "spec.yaml").read_text() == spec  # the second run rewrote nothing
        out, err = a.communicate(timeout=300)
        assert a.returncode == 0, (out, err)
    finally:
        _kill_group(a)
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 6 and df.task_id.is_unique and (df.status == "done").all(), df[["status", "error"]]
    assert count_lines(counter) == 6 and yaml.safe_load((run / "spec.yaml").read_text())["name"] == "first"

    # kill -9 a run mid-way: the next one takes the stale lock over and completes the suite.
    data["seeds"] = [1]
    first.write_text(yaml.safe_dump(data))
    c = start_dipir(["run", str(first), "--out", str(run), "--workers", "2", "--no-progress"], env)
    d = None
    try:
        _wait_for(lambda: count_lines(counter) >= 7, c)
        os.kill(c.pid, signal.SIGKILL)
        c.wait(timeout=30)
        assert holder().get("pid") == c.pid  # the dead run's lock file still names it
        dead_token = holder()["token"]
        probes = {p.name for p in (run / ".staging").iterdir()}  # the dead run's own storage probe
        d = start_dipir(["run", str(first), "--out", str(run), "--workers", "2", "--no-progress"], env)
        # The dead run's Ray workers outlive it by a second or more. Play one of them once the new
        # run is at work (its storage probe is up): it can leave a staging folder, not commit.
        _wait_for(lambda: holder().get("pid") == d.pid and any(
            p.name.startswith(".probe-") and p.name not in probes for p in (run / ".staging").iterdir()), d)
        old = next((run / "stale").iterdir())  # a finished task of the first suite
        (store.staging_dir(run, old.name) / "partial.png").write_bytes(b"half")
        with pytest.raises(store.LockLost):
            store.commit_task(run, store.staging_dir(run, old.name),
                              json.loads((old / "result.json").read_text()), token=dead_token)
        out, err = d.communicate(timeout=300)
        assert d.returncode == 0, (out, err)
        assert f"took over the run folder's lock from pid {c.pid}" in err
    finally:
        for proc in (c, d):
            if proc is not None:
                _kill_group(proc)
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 6 and df.task_id.is_unique and (df.status == "done").all(), df[["status", "error"]]
    assert (df.seed == 1).all() and not list((run / ".staging").iterdir())
    assert len(list((run / "stale").iterdir())) == 6  # seed 0's tasks, set aside by the killed run
    assert holder() == {}  # released cleanly


def test_finished_tasks_take_the_labels_the_suite_gives_them_now(tmp_path):
    """A dataset entry renamed (or a twin HDRI that makes a scene id take its key's prefix) changes no
    task id: the finished results must not keep the old names, or the report splits one scene in two."""
    import numpy as np

    from dipir.rendering.hdr import write_hdr
    from pipelines.runner import prepare

    (tmp_path / "maps").mkdir()
    write_hdr(tmp_path / "maps" / "sky.exr", np.ones((16, 32, 3), np.float32))
    path = tmp_path / "suite.yaml"
    data = {"name": "t", "methods": ["constant"], "datasets": [{"kind": "polyhaven", "name": "ph", "path": "maps"}],
            "render": TINY_RENDER}
    path.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    with store.run_lock(run):
        (task,), todo = prepare(load_suite(path), run, retry_failed=False)
        store.commit_task(run, store.staging_dir(run, task.task_id),
                          _result(task.task_id, dataset=task.dataset, scene_id=task.scene_id))
    assert (task.dataset, task.scene_id) == ("ph", "sky_az000")
    data["datasets"][0]["name"] = "polyhaven-outdoor"
    path.write_text(yaml.safe_dump(data))
    write_hdr(tmp_path / "maps" / "sky.hdr", np.full((16, 32, 3), 2.0, np.float32))  # a twin: ids take a prefix
    with store.run_lock(run):
        tasks, todo = prepare(load_suite(path), run, retry_failed=False)
        assert store.relabel(run, {t.task_id: (t.dataset, t.scene_id) for t in tasks}) == 0  # done once
    (again,) = [t for t in tasks if t.task_id == task.task_id]
    assert task.task_id not in {t.task_id for t in todo}  # still finished: only its labels changed
    res = schema.read_result(run / "tasks" / task.task_id / "result.json")
    assert (res.dataset, res.scene_id) == (again.dataset, again.scene_id) == ("polyhaven-outdoor",
                                                                              f"sky_az000_{task.scene_key[:8]}")
    assert res.metrics == {"rmse_full": 0.5}  # nothing else in it changed


def test_a_done_task_whose_rerun_fails_keeps_its_folder_aside(tmp_path):
    """A done task scored by an older evaluation runs again; if the rerun fails, the failure is its
    result now, and the done folder (its estimate, its artifacts) is kept under RUN/replaced/."""
    run = tmp_path / "run"
    store.init_run(run, {"name": "x"}, {})
    stage = store.staging_dir(run, "t0")
    (stage / "envmap.exr").write_bytes(b"exr")
    store.commit_task(run, stage, _result("t0", evaluation=None))
    assert store.pending(["t0"], run, retry_failed=False) == ["t0"]  # an older evaluation: runs again
    store.commit_task(run, store.staging_dir(run, "t0"), _result("t0", "failed"))
    assert store.finished(run) == {"t0": "failed"}
    kept = run / "replaced" / "t0"
    assert (kept / "envmap.exr").read_bytes() == b"exr"
    assert json.loads((kept / "result.json").read_text())["status"] == "done"
    store.commit_task(run, store.staging_dir(run, "t0"), _result("t0"))  # a later rerun that works
    assert store.finished(run) == {"t0": "done"} and (kept / "envmap.exr").exists()
