"""Waymo v1/v2: TFRecord framing, range-image math, round trips of synthetic segments written in the
real formats, scene folders, bad input, streaming memory."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from helpers import edited_v2_component
from helpers.cli import refused_in_process

from dipir.data import waymo_v1, waymo_v2
from dipir.data.range_image import (
    column_azimuths,
    euler_to_rotation,
    range_image_to_points,
    row_inclinations,
)
from dipir.data.synth_waymo import (
    SynthWaymoConfig,
    camera_calibration,
    laser_calibrations,
    load_truth,
    surface_distance,
    v1_filename,
    write_segments,
)
from dipir.data.tfrecord import TFRecordWriter, iter_records, masked_crc32c
from dipir.errors import DipirError

CFG = SynthWaymoConfig.small(image_width=96, image_height=64)


@pytest.fixture(scope="module")
def segs(tmp_path_factory):
    root = tmp_path_factory.mktemp("waymo")
    v1 = write_segments(root / "v1", "v1", segments=1, frames=2, seed=3, config=CFG)[0]
    v2 = write_segments(root / "v2", "v2", segments=1, frames=2, seed=3, config=CFG)[0]
    v2b = write_segments(root / "v2b", "v2", segments=1, frames=2, seed=3, config=CFG, v2_float64=True)[0]
    return {"v1": v1, "v2": v2, "v2_float64": v2b}


def _read(segs, kind, index):
    return (waymo_v1 if kind == "v1" else waymo_v2).read_frame(segs[kind], index)


# --- TFRecord ---------------------------------------------------------------------------------

def test_crc32c_is_castagnoli_and_masked():
    import google_crc32c

    assert google_crc32c.value(b"123456789") == 0xE3069283  # the CRC-32C check value
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_tfrecord_round_trip_and_layout(tmp_path):
    p = tmp_path / "x.tfrecord"
    with TFRecordWriter(p) as w:
        for r in (b"", b"abc", bytes(range(256)) * 10):
            w.write(r)
    raw = p.read_bytes()
    assert struct.unpack("<Q", raw[:8])[0] == 0 and len(raw) == 3 * 16 + 3 + 2560
    got = list(iter_records(p))
    assert [d for _, d in got] == [b"", b"abc", bytes(range(256)) * 10]
    assert [o for o, _ in got] == [0, 16, 35]


# --- Range images -----------------------------------------------------------------------------

def test_range_image_math_by_hand():
    incl = row_inclinations(2, None, -0.2, 0.2)
    assert np.allclose(incl, [0.1, -0.1])  # uniform bin centres, row 0 the highest
    assert np.allclose(row_inclinations(3, [-0.3, -0.1, 0.05]), [0.05, -0.1, -0.3])
    e = np.eye(4)
    e[:3, :3] = euler_to_rotation(0.0, 0.0, 0.3)
    e[:3, 3] = [1.0, 2.0, 3.0]
    az = column_azimuths(4, e)
    assert np.allclose(az, [(2 * (4 - j - 0.5) / 4 - 1) * np.pi - 0.3 for j in range(4)])
    ri = np.zeros((2, 4, 4), np.float32)
    ri[1, 2, 0] = 5.0
    ri[0, 0, 0] = -1.0  # no return
    ri[0, 1, 0], ri[0, 3, 0] = np.inf, np.nan  # no point either (they reached points.ply as inf)
    p = range_image_to_points(ri, e, incl)
    a, i = az[2], -0.1
    expect = e[:3, :3] @ (5 * np.array([np.cos(a) * np.cos(i), np.sin(a) * np.cos(i), np.sin(i)])) + e[:3, 3]
    assert p.shape == (1, 3) and np.allclose(p[0], expect, atol=1e-5)
    # In the vehicle frame the column azimuth does not depend on the sensor's mounting yaw.
    assert np.isclose(np.arctan2(p[0, 1] - 2, p[0, 0] - 1), (2 * (4 - 2 - 0.5) / 4 - 1) * np.pi, atol=1e-5)


def test_pixel_pose_motion_compensation():
    incl = row_inclinations(1, None, 0.0, 0.0)
    ri = np.zeros((1, 2, 4), np.float32)
    ri[0, :, 0] = 10.0
    frame_pose = np.eye(4)
    frame_pose[:3, 3] = [100.0, 0, 0]
    pix = np.zeros((1, 2, 6), np.float32)
    pix[0, :, 3] = [100.0, 101.5]  # the second column was captured 1.5 m further along x
    p = range_image_to_points(ri, np.eye(4), incl, pix, frame_pose)
    p0 = range_image_to_points(ri, np.eye(4), incl)
    assert np.allclose(p[0], p0[0], atol=1e-4) and np.allclose(p[1] - p0[1], [1.5, 0, 0], atol=1e-4)


# --- Round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["v1", "v2", "v2_float64"])
def test_round_trip_images_calibrations_points(segs, kind):
    truth = None
    for index in (0, 1):
        fr = _read(segs, kind, index)
        truth = truth or load_truth(segs[kind], fr.segment)
        ft = truth["frames"][index]
        assert fr.timestamp_micros == ft["timestamp"]
        assert hashlib.sha256(fr.image).hexdigest() == ft["image_sha256"]
        assert np.allclose(fr.pose.ravel(), ft["pose"])
        cal = camera_calibration(CFG)
        assert np.allclose(fr.camera.intrinsic, cal["intrinsic"]) and np.allclose(fr.camera.extrinsic, cal["extrinsic"])
        assert (fr.camera.width, fr.camera.height) == (96, 64) and fr.decode_image().shape == (64, 96, 3)
        lasers = {s.name: s for s in fr.lasers}
        for lc in laser_calibrations(CFG):
            s = lasers[lc["name"]]
            assert s.range_image.shape == (lc["height"], lc["width"], 4)  # shape read from the data
            assert np.allclose(s.extrinsic, lc["extrinsic"])
            assert (s.pixel_pose is not None) == (lc["name"] == 1)
        pts, _ = fr.points()
        d = surface_distance(truth, pts, fr.pose)
        assert len(pts) > 1000 and np.median(d) < 0.02 and np.percentile(d, 95) < 0.05


def test_v1_and_v2_agree(segs):
    a, b = _read(segs, "v1", 1), _read(segs, "v2", 1)
    assert a.image == b.image and np.allclose(a.points()[0], b.points()[0], atol=1e-4)


def test_scene_from_waymo_frame(segs, tmp_path):
    from PIL import Image

    from dipir.data.waymo import make_scene
    from dipir.scene.contract import load_scene
    from dipir.scene.geometry import project

    for kind in ("v1", "v2"):
        s = load_scene(make_scene(segs[kind], tmp_path / kind, frame_index=1))
        assert s.points is not None and s.points.is_file() and s.object.mesh == "builtin:car"
        prov = s.provenance
        assert prov["dataset"] == "waymo" and prov["format"] == kind and prov["camera"] == "FRONT"
        assert prov["timestamp_micros"] == load_truth(segs[kind], prov["segment"])["frames"][1]["timestamp"]
        t = prov["truth"]
        assert np.degrees(np.arccos(np.dot(t["plane_normal"], s.plane.normal))) < 0.5
        # Scene world: camera above the origin looking roughly +Z, +Y up.
        assert np.allclose(s.camera.to_world[[0, 2], 3], 0) and s.camera.to_world[2, 2] > 0.95
        assert abs(float((s.object.position - s.plane.point) @ s.plane.normal)) < 1e-6
    # The camera sees the boxes where the LiDAR says they are: box returns (intensity 0.6) project onto
    # coloured pixels, ground returns (0.25) onto grey ones. This pins the camera/LiDAR conventions.
    pts, inten = _read_ply(s.points)
    uv, z = project(s.camera, pts)
    img = np.asarray(Image.open(s.background), dtype=np.float64)
    ok = (z > 0) & (uv[:, 0] >= 1) & (uv[:, 0] < s.camera.width - 1) & (uv[:, 1] >= 1) & (uv[:, 1] < s.camera.height - 1)
    px = img[uv[ok, 1].astype(int), uv[ok, 0].astype(int)]
    sat = (px.max(1) - px.min(1)) / np.maximum(px.max(1), 1)
    box, ground = np.isclose(inten[ok], 0.6), np.isclose(inten[ok], 0.25)
    assert box.sum() > 10 and ground.sum() > 10
    assert np.median(sat[box]) > 2 * np.median(sat[ground])


def _read_ply(path):
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    n = int([ln for ln in raw[:end].decode().splitlines() if ln.startswith("element vertex")][0].split()[-1])
    rec = np.frombuffer(raw[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")], count=n)
    return np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float64), rec["intensity"]


# --- Bad input: one line naming the file and the record offset / column, exit code 2 ---------

def _frames_file(segs):
    return segs["v1"]


def test_truncated_tfrecord(segs, tmp_path, capsys):
    raw = _frames_file(segs).read_bytes()
    first = struct.unpack("<Q", raw[:8])[0] + 16
    bad = tmp_path / "trunc.tfrecord"
    bad.write_bytes(raw[: first + 100])
    err = refused_in_process(["scene", "waymo", str(bad), "--frame", "1", "--out", str(tmp_path / "o")], capsys)
    assert str(bad) in err and f"record at byte {first}" in err and "truncated" in err
    with pytest.raises(DipirError):  # --debug lets the exception through (traceback)
        from dipir.cli.main import main

        main(["--debug", "scene", "waymo", str(bad), "--frame", "1", "--out", str(tmp_path / "o")])


def test_crc_mismatch(segs, tmp_path, capsys):
    raw = bytearray(_frames_file(segs).read_bytes())
    raw[40] ^= 0xFF  # inside the first record's data
    bad = tmp_path / "crc.tfrecord"
    bad.write_bytes(bytes(raw))
    err = refused_in_process(["scene", "waymo", str(bad), "--frame", "0", "--out", str(tmp_path / "o")], capsys)
    assert str(bad) in err and "record at byte 0" in err and "CRC mismatch" in err


def test_frame_without_lidar(segs, tmp_path, capsys):
    from dipir.data.waymo_protos import dataset_pb2

    _, data = next(iter_records(_frames_file(segs)))
    f = dataset_pb2().Frame.FromString(data)
    del f.lasers[:]
    bad = tmp_path / "nolidar.tfrecord"
    with TFRecordWriter(bad) as w:
        w.write(data)
        w.write(f.SerializeToString())
    second = 16 + len(data)
    # --ground lidar insists on range images (auto would take the calibration's ground instead)
    err = refused_in_process(["scene", "waymo", str(bad), "--frame", "1", "--ground", "lidar", "--out", str(tmp_path / "o")], capsys)
    assert str(bad) in err and f"record at byte {second}" in err and "no LiDAR" in err


def test_parquet_missing_column(segs, tmp_path, capsys):
    import shutil

    import pyarrow.parquet as pq

    root = tmp_path / "v2"
    shutil.copytree(segs["v2"], root)
    f = next((root / "lidar_calibration").glob("*.parquet"))
    t = pq.read_table(f)
    col = "[LiDARCalibrationComponent].extrinsic.transform"
    pq.write_table(t.drop_columns([col]), f)
    err = refused_in_process(["scene", "waymo", str(root), "--frame", "0", "--out", str(tmp_path / "o")], capsys)
    assert str(f) in err and col in err and "missing" in err


def test_no_ground_plane_is_a_clear_error():
    from dipir.scene.geometry import fit_plane

    rng = np.random.default_rng(0)
    wall = np.stack([rng.uniform(-5, 5, 2000), rng.uniform(0, 4, 2000), np.full(2000, 6.0)], 1)
    with pytest.raises(DipirError, match="no ground plane.*tilted"):
        fit_plane(wall + rng.normal(0, 0.01, wall.shape))
    with pytest.raises(DipirError, match="no ground plane.*inliers"):
        fit_plane(rng.uniform(-5, 5, (2000, 3)))


# --- Streaming --------------------------------------------------------------------------------

def test_v1_reader_memory_stays_flat(segs, tmp_path):
    """200 frames, each carrying a 32x1024 range image of random ranges (~140 kB compressed): reading them all must not grow
    the peak RSS by more than a small fraction of the file."""
    from dipir.data.range_image import encode_matrix_float
    from dipir.data.waymo_protos import dataset_pb2

    _, data = next(iter_records(segs["v1"]))
    f = dataset_pb2().Frame.FromString(data)
    rng = np.random.default_rng(0)
    top = next(la for la in f.lasers if la.name == 1)
    h, w = 32, 1024
    ri = np.zeros((h, w, 4), np.float32)
    ri[..., 0] = rng.uniform(1, 70, (h, w))
    top.ri_return1.range_image_compressed = encode_matrix_float(ri)
    top.ri_return1.range_image_pose_compressed = encode_matrix_float(np.zeros((h, w, 6), np.float32))
    cal = next(c for c in f.context.laser_calibrations if c.name == 1)
    del cal.beam_inclinations[:]
    path = tmp_path / v1_filename("long")
    with TFRecordWriter(path) as wr:
        for k in range(200):
            f.timestamp_micros = 1_000_000 + k * 100_000
            wr.write(f.SerializeToString())
    size_mb = path.stat().st_size / 2**20
    assert size_mb > 20
    # VmHWM (peak resident set) is per address space, so unlike ru_maxrss it is fresh after exec.
    code = textwrap.dedent(f"""
        import json
        from dipir.data.waymo_v1 import iter_frames
        from dipir.data.waymo_protos import dataset_pb2
        dataset_pb2()

        def hwm():
            line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
            return int(line.split()[1]) / 1024

        n, peaks = 0, [hwm()]
        for fr in iter_frames({str(path)!r}):
            pts, _ = fr.points()
            n += 1
            if n in (1, 200):
                peaks.append(hwm())
        print(json.dumps({{"n": n, "peaks": peaks}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    per_frame_growth = res["peaks"][2] - res["peaks"][1]  # frames 2..200 add (almost) nothing
    total = res["peaks"][2] - res["peaks"][0]  # a reader holding the file would add >= its size
    print("peak RSS MB before, after 1 and after 200 frames:", res["peaks"], "file MB:", size_mb)
    assert res["n"] == 200 and per_frame_growth < 0.2 * size_mb and total < 0.7 * size_mb, (res, size_mb)


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_synth_and_scene_cli(tmp_path, fmt):
    from dipir.cli.main import main
    from dipir.scene.contract import load_scene

    out = tmp_path / "seg"
    with pytest.raises(SystemExit) as exc:
        main(["synth", "waymo", str(out), "--format", fmt, "--small", "--frames", "2", "--segments", "2",
              "--image-size", "40x24", "--time-of-day", "Night"])
    assert exc.value.code == 0
    target = sorted(out.glob("*.tfrecord"))[1] if fmt == "v1" else out
    if fmt == "v1":
        assert len(list(out.glob("segment-*_with_camera_labels.tfrecord"))) == 2
    else:
        assert len(list((out / "lidar").glob("*.parquet"))) == 2
    args = ["scene", "waymo", str(target), "--frame", "1", "--out", str(tmp_path / "s"), "--object", "builtin:bucket",
            "--class", "bucket", "--distance", "6", "--width", "20"]
    if fmt == "v2":
        args += ["--segment", "synth0000_001"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    s = load_scene(tmp_path / "s")
    assert s.provenance["segment"] == "synth0000_001" and s.object.cls == "bucket" and s.camera.width == 20
    assert s.provenance["time_of_day"] == "Night" and s.provenance["condition"] == "night"


def test_matrix_float_packed_and_unpacked_encodings():
    """proto2 repeated fields without [packed=true]: writers may emit either wire encoding."""
    import zlib

    from dipir.data.range_image import decode_matrix_float, encode_matrix_float

    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 0.5

    from helpers import varint

    dims = b"".join(varint(d) for d in a.shape)
    shape_packed = b"\x0a" + varint(len(dims)) + dims  # TensorShape.dims = 1, packed
    data = a.tobytes()
    packed = b"\x0a" + varint(len(data)) + data + b"\x12" + varint(len(shape_packed)) + shape_packed
    unpacked = b"".join(b"\x0d" + struct.pack("<f", x) for x in a.ravel())
    shape_unpacked = b"".join(b"\x08" + varint(d) for d in a.shape)
    unpacked += b"\x12" + varint(len(shape_unpacked)) + shape_unpacked
    for raw in (packed, unpacked):
        assert np.array_equal(decode_matrix_float(zlib.compress(raw)), a)
    assert np.array_equal(decode_matrix_float(encode_matrix_float(a)), a)
    with pytest.raises(DipirError, match="zlib"):
        decode_matrix_float(b"not zlib", "f.tfrecord", "record at byte 0")


def test_v2_files_match_the_official_component_schemas(segs):
    """Every column of Waymo's own v2 component dataclasses (waymo_open_dataset.v2.perception) is in
    our files with the same Arrow type. The package's `v2/__init__` needs dask and TensorFlow, so a
    subprocess imports only the component modules, with a stand-in `tensorflow` module (used there
    only in type annotations)."""
    code = textwrap.dedent(f"""
        import importlib.util, json, os, sys, types
        import pyarrow.parquet as pq

        class Stub(types.ModuleType):
            def __getattr__(self, name):
                if name.startswith("__"):
                    raise AttributeError(name)
                return Stub(self.__name__ + "." + name)

        sys.modules["tensorflow"] = Stub("tensorflow")
        root = list(importlib.util.find_spec("waymo_open_dataset").submodule_search_locations)[0]
        for name, sub in (("waymo_open_dataset.v2", "v2"), ("waymo_open_dataset.v2.perception", "v2/perception")):
            m = types.ModuleType(name)
            m.__path__ = [os.path.join(root, sub)]
            sys.modules[name] = m
        from waymo_open_dataset.v2.perception import camera_image, context, lidar, pose

        comps = {{"camera_image": camera_image.CameraImageComponent, "camera_calibration": context.CameraCalibrationComponent,
                  "lidar": lidar.LiDARComponent, "lidar_calibration": context.LiDARCalibrationComponent,
                  "lidar_pose": lidar.LiDARPoseComponent, "vehicle_pose": pose.VehiclePoseComponent,
                  "stats": context.StatsComponent}}
        problems, n = [], 0
        for tag, comp in comps.items():
            path = next(iter(sorted(os.scandir(os.path.join({str(segs["v2"])!r}, tag)), key=lambda e: e.name))).path
            ours = pq.read_schema(path)
            for f in comp.schema():
                n += 1
                if f.name not in ours.names:
                    problems.append(f"{{tag}}: missing {{f.name}}")
                elif ours.field(f.name).type != f.type:
                    problems.append(f"{{tag}}: {{f.name}} is {{ours.field(f.name).type}}, official {{f.type}}")
        print(json.dumps({{"n": n, "problems": problems}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] > 40 and res["problems"] == []


def test_frame_and_camera_errors(segs, tmp_path, capsys):
    err = refused_in_process(["scene", "waymo", str(segs["v1"]), "--frame", "7", "--out", str(tmp_path / "o")], capsys)
    assert str(segs["v1"]) in err and "has 2 frames" in err
    err = refused_in_process(["scene", "waymo", str(segs["v2"]), "--frame", "0", "--camera", "SIDE_LEFT", "--out",
                str(tmp_path / "o")], capsys)
    assert "camera_image" in err and "no images from camera SIDE_LEFT" in err
    err = refused_in_process(["scene", "waymo", str(segs["v1"]), "--camera", "BACK", "--out", str(tmp_path / "o")], capsys)
    assert "unknown camera 'BACK'" in err


def _front(frame):
    return next(c for c in frame.context.camera_calibrations if c.name == 1)


def _one_channel(frame):
    from dipir.data.range_image import decode_matrix_float, encode_matrix_float

    for laser in frame.lasers:
        ri = decode_matrix_float(laser.ri_return1.range_image_compressed)
        laser.ri_return1.range_image_compressed = encode_matrix_float(ri[..., :1])


def _negative_dims(frame):
    from dipir.data.waymo_protos import dataset_pb2

    m = dataset_pb2().MatrixFloat()
    m.data.extend([1.0] * 4)
    m.shape.dims.extend([-2, -2, 1])
    frame.lasers[0].ri_return1.range_image_compressed = zlib.compress(m.SerializeToString())


# A v1 frame edited one way each -> the proto field the one-line error names. Before, the scene was
# written from a zero or negative focal length or a scaled camera, or the reader crashed.
V1_BAD = {
    "f_u zero": (lambda f: _front(f).intrinsic.__setitem__(0, 0.0), "camera_calibrations[FRONT].intrinsic: "
                 "expected 9 finite numbers with focal lengths"),
    "f_u nan": (lambda f: _front(f).intrinsic.__setitem__(0, float("nan")), "camera_calibrations[FRONT].intrinsic"),
    "scaled extrinsic": (lambda f: [_front(f).extrinsic.transform.__setitem__(i, 2 * _front(f).extrinsic.transform[i])
                                    for i in (0, 1, 2, 4, 5, 6, 8, 9, 10)],
                         "camera_calibrations[FRONT].extrinsic.transform: expected a rigid"),
    "singular pose": (lambda f: (f.pose.ClearField("transform"), f.pose.transform.extend([0.0] * 16)),
                      "pose.transform: expected a rigid vehicle -> world pose"),
    "one-channel range image": (_one_channel, "range_image_compressed: laser 1: range image has shape [32, 256, 1]"),
    "negative dims": (_negative_dims, "MatrixFloat holds 4 values for shape [-2, -2, 1]"),
}


@pytest.mark.parametrize("case", sorted(V1_BAD))
def test_a_v1_frame_with_bad_calibration_or_lidar_is_one_line(segs, tmp_path, capsys, case):
    from dipir.data.waymo_protos import dataset_pb2

    edit, words = V1_BAD[case]
    _, data = next(iter_records(_frames_file(segs)))
    f = dataset_pb2().Frame.FromString(data)
    edit(f)
    bad = tmp_path / "bad.tfrecord"
    with TFRecordWriter(bad) as w:
        w.write(f.SerializeToString())
    err = refused_in_process(["scene", "waymo", str(bad), "--frame", "0", "--ground", "lidar", "--out", str(tmp_path / "o")],
               capsys)
    assert f"{bad}: record at byte 0: " in err and words in err, err
    assert not (tmp_path / "o").exists()


def _cell(table, column: str, value):
    """`table` with `column`'s first row replaced (None: a null cell)."""
    import pyarrow as pa

    i = table.schema.get_field_index(column)
    rows = table.column(column).to_pylist()
    rows[0] = value
    return table.set_column(i, table.schema.field(i), pa.array(rows, type=table.schema.field(i).type))


def _as_list(table, column: str):
    """The column as a variable-length list<double> (Waymo's files use both that and fixed-size lists)."""
    import pyarrow as pa

    i = table.schema.get_field_index(column)
    kind = pa.list_(pa.float64())
    return table.set_column(i, pa.field(column, kind), pa.array(table.column(column).to_pylist(), type=kind))


def _retyped(table, column: str):
    import pyarrow as pa

    i = table.schema.get_field_index(column)
    return table.set_column(i, pa.field(column, pa.string()), pa.array([str(x) for x in table.column(column).to_pylist()]))


def _as_float(table, column: str):
    """The column as float64 (what pandas makes of an int column with a missing value)."""
    import pyarrow as pa

    i = table.schema.get_field_index(column)
    return table.set_column(i, pa.field(column, pa.float64()), table.column(column).cast(pa.float64()))


CCAL, LCAL, LID = "[CameraCalibrationComponent]", "[LiDARCalibrationComponent]", "[LiDARComponent]"
# A v2 component edited one way each -> the file and column the one-line error names. Before: a
# reshape, float(None) or pyarrow traceback, or a scene written from a zero focal length.
V2_BAD = {
    "f_u zero": ("camera_calibration", lambda t: _cell(t, f"{CCAL}.intrinsic.f_u", 0.0),
                 f"camera_calibration: {CCAL}.intrinsic: expected 9 finite numbers"),
    "f_u null": ("camera_calibration", lambda t: _cell(t, f"{CCAL}.intrinsic.f_u", None),
                 f"{CCAL}.intrinsic.f_u: expected a number, got None"),
    "width null": ("camera_calibration", lambda t: _cell(t, f"{CCAL}.width", None), f"{CCAL}.width: expected a number"),
    "extrinsic of 12": ("camera_calibration", lambda t: _cell(_as_list(t, f"{CCAL}.extrinsic.transform"),
                                                                     f"{CCAL}.extrinsic.transform", [1.0] * 12),
                        f"{CCAL}.extrinsic.transform: expected a 4x4 transform (16 numbers), got 12"),
    "pose null": ("vehicle_pose", lambda t: _cell(t, "[VehiclePoseComponent].world_from_vehicle.transform", None),
                  "world_from_vehicle.transform: expected a 4x4 transform (16 numbers), got 0"),
    "image null": ("camera_image", lambda t: _cell(t, "[CameraImageComponent].image", None),
                   "expected the JPEG's bytes, got NoneType"),
    "beam min null": ("lidar_calibration", lambda t: _cell(t, f"{LCAL}.beam_inclination.min", None),
                      f"{LCAL}.beam_inclination.min: expected a number"),
    "timestamp as text": ("camera_image", lambda t: _retyped(t, "key.frame_timestamp_micros"),
                          "key.frame_timestamp_micros: expected an integer column, got string"),
    "rows twice": ("camera_image", lambda t: __import__("pyarrow").concat_tables([t, t]),
                   "key.frame_timestamp_micros: segment synth0003_000 has more than one image from camera FRONT"),
    # pandas writes a missing int as NaN in a float column; a list cell may hold a null.
    "width NaN": ("camera_calibration", lambda t: _cell(_as_float(t, f"{CCAL}.width"), f"{CCAL}.width", float("nan")),
                  f"{CCAL}.width: expected a whole number, got nan"),
    "null in shape": ("lidar", lambda t: _cell(t, f"{LID}.range_image_return1.shape", [32, None, 4]),
                      f"{LID}.range_image_return1.shape: expected a shape of whole numbers, got [32.0, nan, 4.0]"),
    "negative shape": ("lidar", lambda t: _cell(t, f"{LID}.range_image_return1.shape", [-32, -256, 4]),
                       f"{LID}.range_image_return1.shape: expected a shape of whole numbers"),
    "NaN in transform": ("lidar_calibration", lambda t: _cell(_as_list(t, f"{LCAL}.extrinsic.transform"),
                                                              f"{LCAL}.extrinsic.transform", [float("nan")] * 16),
                         f"{LCAL}.extrinsic.transform: expected a 4x4 transform of finite numbers"),
}


@pytest.mark.parametrize("case", sorted(V2_BAD))
def test_a_v2_component_with_a_bad_cell_is_one_line(segs, tmp_path, capsys, case):
    tag, edit, words = V2_BAD[case]
    root = tmp_path / "v2"
    edited_v2_component(segs["v2"], root, tag, edit)
    err = refused_in_process(["scene", "waymo", str(root), "--frame", "0", "--ground", "lidar", "--out", str(tmp_path / "o")],
               capsys)
    assert str(root) in err and words in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("text", "words"), [('{"seed": 3, "frames": [', "not valid JSON"),
                                             ('{"labels": []}', "seed: expected the segment's integer seed"),
                                             ('{"seed": 3, "frames": [{"timestamp": 1}]}', "frames[0]: expected")])
def test_a_damaged_truth_sidecar_is_one_line(segs, tmp_path, capsys, text, words):
    """A synthetic segment's truth/<segment>.json that is cut short or someone else's: named, not a crash."""
    import shutil

    src = _frames_file(segs)
    shutil.copy(src, tmp_path / src.name)
    truth = tmp_path / "truth" / (src.parent / "truth").glob("*.json").__next__().name
    truth.parent.mkdir()
    truth.write_text(text)
    err = refused_in_process(["scene", "waymo", str(tmp_path / src.name), "--ground", "calibration", "--out", str(tmp_path / "o")],
               capsys)
    assert f"{truth}: {words}" in err, err
