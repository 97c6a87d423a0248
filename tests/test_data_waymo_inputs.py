"""Waymo input that used to be taken silently: a user's mesh labelled with the builtin car's class on a
camera-only frame, NaN / infinite LiDAR poses, inclinations and intensities written to points.ply,
duplicate v2 rows (first or last one taken, points doubled), and a TOP sweep without its per-pixel pose
(not motion-compensated). Each is now one line naming the file and the field."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import edited_v2_component
from helpers.cli import main_in_process, refused_in_process

from dipir.data.range_image import decode_matrix_float, encode_matrix_float
from dipir.data.synth_waymo import SynthWaymoConfig, write_segments
from dipir.data.tfrecord import TFRecordWriter, iter_records
from dipir.scene.contract import load_scene

SEG, TS, CAM, LASER = "key.segment_context_name", "key.frame_timestamp_micros", "key.camera_name", "key.laser_name"
LCAL, LID, LPOSE = "[LiDARCalibrationComponent]", "[LiDARComponent]", "[LiDARPoseComponent]"
BOX = "".join(f"v {x} {y} {z}\n" for x in (-0.5, 0.5) for y in (0, 1) for z in (-0.5, 0.5)) + \
    "f 1 2 4 3\nf 5 7 8 6\nf 1 5 6 2\nf 3 4 8 7\nf 1 3 7 5\nf 2 6 8 4\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("wi")
    cfg = SynthWaymoConfig.small(render=False)
    return {"v1": write_segments(root / "v1", "v1", frames=1, config=cfg)[0],
            "v2": write_segments(root / "v2", "v2", frames=1, config=cfg)[0],
            "v2_nolidar": write_segments(root / "v2n", "v2", frames=1,
                                         config=SynthWaymoConfig.small(render=False, lidar=False))[0]}


# --- 1. A user's mesh on a camera-only frame: the same object rule as with LiDAR --------------

@pytest.mark.parametrize("kind", ["v2_nolidar", "v2"])
def test_own_mesh_needs_its_class_with_or_without_lidar(data, tmp_path, capsys, kind):
    """Before, the camera-only path merged the builtin car's keys into the user's object: box.obj
    was silently labelled "car" (the LiDAR path refused it)."""
    mesh = tmp_path / "box.obj"
    mesh.write_text(BOX)
    argv = ["scene", "waymo", str(data[kind]), "--object", str(mesh)]
    err = refused_in_process(argv + ["--out", str(tmp_path / "o")], capsys)
    assert "object.class: missing: what box.obj is" in err, err
    code, err = main_in_process(argv + ["--class", "crate", "--out", str(tmp_path / "ok")], capsys)
    assert code == 0, err
    assert load_scene(tmp_path / "ok" / "scene.yaml").object.cls == "crate"


# --- 2, 4. v1: NaN / infinite LiDAR values where there is a return; TOP without its pose -------

def _top(frame):
    return next(la for la in frame.lasers if la.name == 1)


def _top_cal(frame):
    return next(c for c in frame.context.laser_calibrations if c.name == 1)


def _edit_top(channel_edit, pose: bool = False):
    """Edit the TOP range image (or its per-pixel pose) in place."""
    def edit(frame):
        r = _top(frame).ri_return1
        a = decode_matrix_float(r.range_image_pose_compressed if pose else r.range_image_compressed).copy()
        channel_edit(a)
        if pose:
            r.range_image_pose_compressed = encode_matrix_float(a)
        else:
            r.range_image_compressed = encode_matrix_float(a)
    return edit


def _no_beam_values_min_nan(frame):
    del _top_cal(frame).beam_inclinations[:]
    _top_cal(frame).beam_inclination_min = float("nan")


POSE_V1 = "lasers.ri_return1.range_image_pose_compressed: laser 1: pose is NaN or infinite at "
INCL_V1 = "context.laser_calibrations.beam_inclinations/beam_inclination_min/max: laser 1: beam inclination is NaN"
V1_BAD = {
    # before: NaN points in points.ply, left out of the plane fit
    "pose x NaN in rows 20-23": (_edit_top(lambda a: a[20:24, :, 3].__setitem__(Ellipsis, np.nan), pose=True),
                                 POSE_V1 + "1024 pixel(s) with a return (first: row 20, column 0)"),
    # before: "no ground plane: only N LiDAR points"
    "pose roll inf everywhere": (_edit_top(lambda a: a[..., 0].__setitem__(Ellipsis, np.inf), pose=True), POSE_V1),
    "beam inclination NaN": (lambda f: _top_cal(f).beam_inclinations.__setitem__(0, float("nan")),
                             INCL_V1 + " or infinite for 1 range-image row(s) (first: row 31)"),
    "beam min NaN, no values": (_no_beam_values_min_nan, INCL_V1),
    "intensity NaN": (_edit_top(lambda a: a[..., 1].__setitem__(Ellipsis, np.nan)),
                      "lasers.ri_return1.range_image_compressed: laser 1: intensity is NaN or infinite at"),
    # before: the TOP sweep silently went without motion compensation
    "TOP without its pose": (lambda f: _top(f).ri_return1.ClearField("range_image_pose_compressed"),
                             "laser 1: TOP laser has no per-pixel pose (ri_return1.range_image_pose_compressed)"),
}


def _v1_edited(data, tmp_path, edit):
    from dipir.data.waymo_protos import dataset_pb2

    _, raw = next(iter_records(data["v1"]))
    f = dataset_pb2().Frame.FromString(raw)
    edit(f)
    path = tmp_path / "edited.tfrecord"
    with TFRecordWriter(path) as w:
        w.write(f.SerializeToString())
    return path


@pytest.mark.parametrize("case", sorted(V1_BAD))
def test_a_v1_frame_with_nonfinite_lidar_values_is_one_line(data, tmp_path, capsys, case):
    edit, words = V1_BAD[case]
    bad = _v1_edited(data, tmp_path, edit)
    err = refused_in_process(["scene", "waymo", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert f"{bad}: record at byte 0: " in err and words in err, err
    assert not (tmp_path / "o").exists()


def test_nonfinite_values_without_a_return_are_no_point_and_fine(data, tmp_path, capsys):
    """Pixels without a return (range -1) make no point: NaN in their pose or intensity is unused."""
    def no_return(a):
        a[:4, :, 0] = -1.0
        a[:4, :, 1] = np.nan

    def edit(frame):
        _edit_top(no_return)(frame)
        _edit_top(lambda p: p[:4].__setitem__(Ellipsis, np.nan), pose=True)(frame)

    path = _v1_edited(data, tmp_path, edit)
    code, err = main_in_process(["scene", "waymo", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    from dipir.data.waymo_v1 import read_frame

    pts, inten = read_frame(path, 0).points()
    assert np.isfinite(pts).all() and np.isfinite(inten).all()


# --- 2, 3, 4. v2: NaN values, duplicate rows, a missing TOP pose row ---------------------------

def _set(table, column: str, fn):
    """`table` with each cell of list column `column` replaced by fn(cell as a numpy array)."""
    import pyarrow as pa

    i = table.schema.get_field_index(column)
    rows = [None if v is None else fn(np.asarray(v, dtype=np.float64)).tolist() for v in table.column(column).to_pylist()]
    return table.set_column(i, table.schema.field(i), pa.array(rows, type=table.schema.field(i).type))


def _every(k: int, start: int, value: float):
    def fn(v):
        v[start::k] = value
        return v
    return fn


def _twice(t):
    import pyarrow as pa

    return pa.concat_tables([t, t])


V2_BAD = {
    "pose x NaN": ("lidar_pose", lambda t: _set(t, f"{LPOSE}.range_image_return1.values", _every(6, 3, np.nan)),
                   f"lidar_pose: {LPOSE}.range_image_return1.values: laser 1: pose is NaN or infinite at"),
    "beam inclination NaN": ("lidar_calibration",
                             lambda t: _set(t, f"{LCAL}.beam_inclination.values", _every(10**9, 0, np.nan)),  # the first
                             f"lidar_calibration: {LCAL}.beam_inclination.values: laser 1: beam inclination is NaN"),
    "intensity inf": ("lidar", lambda t: _set(t, f"{LID}.range_image_return1.values", _every(4, 1, np.inf)),
                      f"lidar: {LID}.range_image_return1.values: laser 1: intensity is NaN or infinite at"),
    # Before, each of these was taken silently: the first calibration / pose row, the last LiDAR
    # calibration, both copies of a laser's points, the first pose row, the first stats row.
    "camera_calibration twice": ("camera_calibration", _twice, f"more than one row for {SEG}=synth0000_000, {CAM}=1"),
    "vehicle_pose twice": ("vehicle_pose", _twice, f"more than one row for {SEG}=synth0000_000, {TS}="),
    "lidar_calibration twice": ("lidar_calibration", _twice, f"more than one row for {SEG}=synth0000_000, {LASER}=1"),
    "lidar twice": ("lidar", _twice, f"more than one row for {SEG}=synth0000_000, {TS}=1500000000000000, {LASER}=1"),
    "lidar_pose twice": ("lidar_pose", _twice, f"more than one row for {SEG}=synth0000_000, {TS}=1500000000000000, "
                                               f"{LASER}=1"),
    "stats twice": ("stats", _twice, f"more than one row for {SEG}=synth0000_000, {TS}=1500000000000000"),
    # Before: the TOP sweep silently went without motion compensation.
    "lidar_pose without the TOP row": ("lidar_pose", lambda t: t.slice(0, 0),
                                       f"no row for {SEG}=synth0000_000, {TS}=1500000000000000, {LASER}=1"),
}


@pytest.mark.parametrize("case", sorted(V2_BAD))
def test_a_v2_component_with_nonfinite_values_or_duplicate_rows_is_one_line(data, tmp_path, capsys, case):
    tag, edit, words = V2_BAD[case]
    root = tmp_path / "v2"
    f = edited_v2_component(data["v2"], root, tag, edit)
    err = refused_in_process(["scene", "waymo", str(root), "--out", str(tmp_path / "o")], capsys)
    # a missing or doubled row names the component's file; a bad value the root, frame and column
    assert (f"{f}: " if "row for" in words else f"{root}: {SEG}=") in err and words in err, err
    assert not (tmp_path / "o").exists()
