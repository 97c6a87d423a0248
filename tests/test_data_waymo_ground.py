"""Waymo frames without LiDAR: the ground plane from the calibration (`--ground`), v2 keys written as
names, and records that are not Frames at all."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from helpers import varint
from helpers.cli import main_in_process

from dipir.data.synth_waymo import SynthWaymoConfig, camera_calibration, write_segments
from dipir.data.tfrecord import TFRecordWriter
from dipir.scene.contract import load_scene

CAM_Z = float(camera_calibration(SynthWaymoConfig.small())["extrinsic"][2, 3])  # 1.6 m


def _cfg(**kw) -> SynthWaymoConfig:
    return SynthWaymoConfig.small(render=False, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("wg")
    return {
        "v1_nolidar": write_segments(root / "v1n", "v1", frames=1, config=_cfg(lidar=False))[0],
        "v2_names_nolidar": write_segments(root / "v2n", "v2", frames=1, config=_cfg(lidar=False, v2_string_names=True))[0],
        "v2_names": write_segments(root / "v2s", "v2", frames=1, config=_cfg(v2_string_names=True))[0],
        "v1": write_segments(root / "v1", "v1", frames=1, config=_cfg())[0],
    }


def _height(scene) -> float:
    o = scene.camera.to_world[:3, 3]
    return float((o - scene.plane.point) @ scene.plane.normal)


@pytest.mark.parametrize("kind", ["v1_nolidar", "v2_names_nolidar"])
def test_frame_without_lidar_gets_the_calibration_ground(data, kind, tmp_path, capsys):
    for ground in ("calibration", "auto"):
        out = tmp_path / ground
        code, err = main_in_process(["scene", "waymo", str(data[kind]), "--ground", ground, "--out", str(out)], capsys)
        assert code == 0, err
        s = load_scene(out / "scene.yaml")
        assert _height(s) == pytest.approx(CAM_Z, abs=1e-6)  # the calibration's camera height
        assert s.plane.normal @ [0, 1, 0] == pytest.approx(1.0)
        assert s.points is None and not (out / "points.ply").exists()
        g = s.provenance["ground"]
        assert g["requested"] == ground and g["source"] == "calibration" and g["camera_height_m"] == pytest.approx(CAM_Z)
        assert g["range_images"] is False
        assert abs(float((s.object.position - s.plane.point) @ s.plane.normal)) < 1e-6
    # asking for the LiDAR plane on such a frame: one line naming the file
    code, err = main_in_process(["scene", "waymo", str(data[kind]), "--ground", "lidar", "--out", str(tmp_path / "l")], capsys)
    assert code == 2 and "no LiDAR" in err and str(data[kind]) in err and "\n" not in err


def test_v2_with_string_keys_reads_lidar_too(data, tmp_path, capsys):
    """key.camera_name / key.laser_name as "FRONT"/"TOP" (Waymo's v2 test data): the same scene as
    the int8 keys give, LiDAR plane included."""
    from dipir.data.waymo_v2 import read_frame

    named = read_frame(data["v2_names"], 0)
    assert [s.name for s in named.lasers] == [1, 2] and named.lasers[0].pixel_pose is not None
    code, err = main_in_process(["scene", "waymo", str(data["v2_names"]), "--out", str(tmp_path / "s")], capsys)
    assert code == 0, err
    s = load_scene(tmp_path / "s" / "scene.yaml")
    assert s.provenance["ground"]["source"] == "lidar" and s.points.is_file()
    # the synthetic road lies 5 cm below the vehicle origin, tilted 2°: the fit sees that, the calibration not
    assert _height(s) == pytest.approx(CAM_Z + 0.05, abs=0.06)


def test_lidar_and_calibration_grounds_agree_on_a_lidar_frame(data, tmp_path, capsys):
    heights = {}
    for ground in ("lidar", "calibration"):
        code, err = main_in_process(["scene", "waymo", str(data["v1"]), "--ground", ground, "--out", str(tmp_path / ground)],
                          capsys)
        assert code == 0, err
        s = load_scene(tmp_path / ground / "scene.yaml")
        assert s.provenance["ground"]["source"] == ground
        assert s.points is not None and s.points.is_file()  # the LiDAR points either way
        heights[ground] = _height(s)
    assert heights["calibration"] == pytest.approx(CAM_Z)
    assert abs(heights["lidar"] - heights["calibration"]) < 0.15
    code, err = main_in_process(["scene", "waymo", str(data["v1"]), "--ground", "radar", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--ground" in err


def _field(num: int, payload: bytes) -> bytes:  # a length-delimited protobuf field
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def motion_example() -> bytes:
    """A tf.Example shaped like a Waymo Motion record (scenario id and agent states), hand-encoded:
    Example{features=1: Features{feature=1: map<string, Feature{bytes_list=1 | float_list=2}>}}."""
    entries = [
        _field(1, b"scenario/id") + _field(2, _field(1, _field(1, b"637f20cafde22ff8"))),
        _field(1, b"state/current/x") + _field(2, _field(2, _field(1, struct.pack("<3f", 1.0, 2.5, -4.0)))),
    ]
    return _field(1, b"".join(_field(1, e) for e in entries))


def test_a_motion_record_is_not_a_frame(tmp_path, capsys):
    bad = tmp_path / "motion.tfrecord"
    with TFRecordWriter(bad) as w:
        w.write(motion_example())
    code, err = main_in_process(["scene", "waymo", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "not a Waymo Frame" in err and str(bad) in err and "record at byte 0" in err
    assert "calibration for camera" not in err


def test_missing_camera_lists_the_cameras_the_frame_has(data, tmp_path, capsys):
    code, err = main_in_process(["scene", "waymo", str(data["v1"]), "--camera", "SIDE_LEFT", "--out", str(tmp_path / "o")],
                      capsys)
    assert code == 2 and "no calibration for camera SIDE_LEFT (has: FRONT)" in err


def test_no_lidar_writer_options(data):
    """The writers' no-LiDAR and string-key variants are what they claim (v1: lasers with calibrations
    but empty range images; v2: no lidar component, string keys)."""
    import pyarrow.parquet as pq

    from dipir.data.tfrecord import iter_records
    from dipir.data.waymo_protos import dataset_pb2

    _, raw = next(iter_records(data["v1_nolidar"]))
    f = dataset_pb2().Frame.FromString(raw)
    assert len(f.context.laser_calibrations) == 2 and len(f.lasers) == 2
    assert not any(las.ri_return1.range_image_compressed for las in f.lasers)
    root = data["v2_names_nolidar"]
    assert not (root / "lidar").exists() and (root / "lidar_calibration").is_dir()
    seg = next((root / "camera_calibration").glob("*.parquet"))
    assert pq.read_table(seg).column("key.camera_name").to_pylist() == ["FRONT"]
    assert np.array_equal(pq.read_table(next((root / "lidar_calibration").glob("*.parquet")))
                          .column("key.laser_name").to_pylist(), ["TOP", "FRONT"])
