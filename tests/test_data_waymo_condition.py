"""Waymo time of day -> scene provenance (`time_of_day`, `condition`) -> the runner's `condition`
column, for v1 and v2 synthetic segments written in the real formats."""

from __future__ import annotations

import shutil

import pytest
import yaml

from dipir.data import waymo, waymo_v1, waymo_v2
from dipir.data.synth_waymo import SynthWaymoConfig, write_segments
from dipir.data.waymo_frame import time_of_day_condition
from dipir.errors import DipirError
from dipir.scene.contract import load_scene

# Flat grey images: only the stats and the geometry matter here.
CFG = SynthWaymoConfig.small(render=False)
SEG = "synth0000_000"


def _write(tmp_path, fmt: str, time_of_day: str):
    cfg = SynthWaymoConfig.small(render=False, time_of_day=time_of_day)
    return write_segments(tmp_path / fmt, fmt, segments=1, frames=2, config=cfg)[0]


def _scene_provenance(path, out) -> dict:
    return load_scene(waymo.make_scene(path, out, frame_index=1, width=24)).provenance


def test_time_of_day_condition_mapping():
    from pipelines.execute import scene_condition

    cases = {"Day": "day", "Dawn/Dusk": "twilight", "Night": "night", " night ": "night", "": None, None: None,
             "Rain": None}
    for raw, cond in cases.items():
        assert time_of_day_condition(raw) == cond, raw
        # The batch runner reads either key: both give the same answer as the loader.
        assert scene_condition({"time_of_day": raw} if raw else {}) == cond, raw


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize("tod,cond", [("Dawn/Dusk", "twilight"), ("Night", "night")])
def test_time_of_day_round_trip_to_provenance(tmp_path, fmt, tod, cond):
    path = _write(tmp_path, fmt, tod)
    reader = waymo_v1 if fmt == "v1" else waymo_v2
    assert reader.read_frame(path, 1).time_of_day == tod
    prov = _scene_provenance(path, tmp_path / "scene")
    assert prov["time_of_day"] == tod and prov["condition"] == cond


def test_synth_default_is_day(tmp_path):
    path = write_segments(tmp_path / "v1", "v1", segments=1, frames=1, config=CFG)[0]
    assert waymo_v1.read_frame(path, 0).time_of_day == "Day"


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_unset_time_of_day_leaves_condition_unset(tmp_path, fmt):
    prov = _scene_provenance(_write(tmp_path, fmt, ""), tmp_path / "scene")
    assert "time_of_day" not in prov and "condition" not in prov


def test_unknown_time_of_day_is_kept_raw_without_condition(tmp_path):
    prov = _scene_provenance(_write(tmp_path, "v1", "Polar night"), tmp_path / "scene")
    assert prov["time_of_day"] == "Polar night" and "condition" not in prov


def test_v2_without_stats_folder_still_loads(tmp_path):
    root = _write(tmp_path, "v2", "Night")
    shutil.rmtree(root / "stats")
    assert waymo_v2.read_frame(root, 0).time_of_day == ""
    prov = _scene_provenance(root, tmp_path / "scene")
    assert prov["segment"] == SEG and "time_of_day" not in prov and "condition" not in prov


def test_v2_stats_folder_without_this_segment(tmp_path):
    root = _write(tmp_path, "v2", "Night")
    (root / "stats" / f"{SEG}.parquet").rename(root / "stats" / "other_segment.parquet")
    assert waymo_v2.read_frame(root, 0).time_of_day == ""


def test_v2_stats_rows_prefer_the_frame_then_any_row(tmp_path):
    import pyarrow.parquet as pq

    root = _write(tmp_path, "v2", "Night")
    path = root / "stats" / f"{SEG}.parquet"
    t = pq.read_table(path)
    ts = t.column("key.frame_timestamp_micros").to_pylist()
    col = t.schema.get_field_index("[StatsComponent].time_of_day")
    pq.write_table(t.set_column(col, "[StatsComponent].time_of_day", [["Dawn/Dusk", ""]]), path)
    assert waymo_v2.read_time_of_day(root, SEG, ts[0]) == "Dawn/Dusk"
    assert waymo_v2.read_time_of_day(root, SEG, ts[1]) == "Dawn/Dusk"  # its own row is empty


def test_v2_stats_file_without_the_column_names_it(tmp_path):
    import pyarrow.parquet as pq

    root = _write(tmp_path, "v2", "Night")
    path = root / "stats" / f"{SEG}.parquet"
    pq.write_table(pq.read_table(path).drop(["[StatsComponent].time_of_day"]), path)
    with pytest.raises(DipirError) as err:
        waymo_v2.read_frame(root, 0)
    assert err.value.field == "[StatsComponent].time_of_day" and str(path) in str(err.value)


def test_condition_reaches_the_pipeline_result(tmp_path):
    """A waymo suite entry over a Night v2 segment: the task's result has condition "night"
    (TaskContext.run in-process, the same call the Ray workers make)."""
    from helpers.pipeline import TINY_RENDER

    from pipelines import store
    from pipelines.execute import IDENTITY, TaskContext, metrics_meta
    from pipelines.suite import load_suite
    from pipelines.tasks import plan

    root = _write(tmp_path, "v2", "Night")
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": "cond", "datasets": [{"kind": "waymo", "path": str(root), "frames": [1], "width": 24}],
        "methods": ["helpers.pipeline:CountingEstimator"], "options": {
            "helpers.pipeline:CountingEstimator": {"counter": str(tmp_path / "count.txt")}},
        "seeds": [0], "render": TINY_RENDER}))
    suite = load_suite(suite_file)
    run = tmp_path / "run"
    tasks = plan(suite, run, IDENTITY)
    assert len(tasks) == 1
    store.init_run(run, suite.to_dict(), metrics_meta())
    res = TaskContext(run, suite.render, None, suite.options).run(tasks[0])
    assert res["status"] == "done" and res["condition"] == "night", res.get("error")


def test_synth_cli_rejects_an_unknown_time_of_day(tmp_path, capsys):
    from dipir.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["synth", "waymo", str(tmp_path / "seg"), "--small", "--time-of-day", "Noon"])
    assert exc.value.code == 2
    assert "--time-of-day" in capsys.readouterr().err
