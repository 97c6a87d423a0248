"""Waymo Open Dataset v2 reader: Parquet files, one folder per component, read with pyarrow.

Layout `{root}/{tag}/{segment_context_name}.parquet`. Reads are column-projected and filtered by
segment, timestamp, camera and laser. Numeric lists may be float32 or float64, `list` or
`fixed_size_list`: both are accepted. `key.camera_name` / `key.laser_name` may be the enum's number
(the released dataset: int8) or its name ("FRONT", as in Waymo's own v2 test data): both are accepted.
The LiDAR components are optional: without them the frame has no range images; with them, the TOP
laser's per-pixel pose (lidar_pose) is required. A key (segment, frame, camera / laser) with more than
one row is refused, never resolved by taking one of the rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dipir.data.range_image import row_inclinations
from dipir.data.waymo_frame import CameraCalibration, LaserScan, WaymoFrame
from dipir.data.waymo_protos import CAMERA_NAMES, LASER_NAMES, camera_id, camera_name
from dipir.errors import DipirError

SEG, TS, CAM, LASER = "key.segment_context_name", "key.frame_timestamp_micros", "key.camera_name", "key.laser_name"
IMG = "[CameraImageComponent]"
CCAL = "[CameraCalibrationComponent]"
LID = "[LiDARComponent]"
LCAL = "[LiDARCalibrationComponent]"
LPOSE = "[LiDARPoseComponent]"
VPOSE = "[VehiclePoseComponent]"
STATS = "[StatsComponent]"
INTRINSIC = ["f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3"]
TOP = 1


def segments(root: str | Path) -> list[str]:
    """Segment context names that have camera images under `root`."""
    folder = Path(root) / "camera_image"
    if not folder.is_dir():
        raise DipirError("not a Waymo v2 folder (no camera_image/ inside)", root)
    return sorted(p.stem for p in folder.glob("*.parquet"))


def _read(root: Path, tag: str, segment: str, columns: list[str], filters=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = root / tag / f"{segment}.parquet"
    if not path.is_file():
        raise DipirError(f"missing component file for segment {segment}", path)
    try:
        schema = pq.read_schema(path)
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError for non-Parquet files
        raise DipirError(f"not a Parquet file ({err.__class__.__name__})", path) from None
    for c in columns + [f[0] for f in (filters or [])]:
        if c not in schema.names:
            raise DipirError("missing required column", path, c)
    kinds = {c: schema.field(c).type for c, _, _ in filters or []}
    for c, kind in kinds.items():  # a key column of another type cannot be filtered (pyarrow: no kernel)
        number, text = pa.types.is_integer(kind), _is_text(kind)
        want, ok = {TS: ("an integer", number), SEG: ("a string", text)}.get(c, ("an integer or a name", number or text))
        if not ok:
            raise DipirError(f"expected {want} column, got {kind}", path, c)
    filters = [(c, op, _key_value(kinds[c], c, v)) for c, op, v in (filters or [])]
    try:
        table = pq.read_table(path, columns=columns, filters=filters or None)
    except (pa.ArrowException, OSError) as err:  # a damaged column chunk, say
        raise DipirError(f"cannot read ({err.__class__.__name__}: {str(err).splitlines()[0][:120]})", path) from None
    return path, table


_ENUMS = {CAM: CAMERA_NAMES, LASER: LASER_NAMES}


def _is_text(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _key_value(kind, column: str, value):
    """A camera/laser filter value in the column's own type (`kind`): the enum name for a string column."""
    if column in _ENUMS and isinstance(value, int) and _is_text(kind):
        return next((k for k, v in _ENUMS[column].items() if v == value), str(value))
    return value


def _enum_ids(path: Path, table, column: str) -> list[int]:
    """A camera/laser key column as enum numbers, whether it holds numbers or names."""
    out = []
    for v in table.column(column).to_pylist():
        if isinstance(v, str):
            if v.upper() not in _ENUMS[column]:
                raise DipirError(f"unknown name {v!r} (have: {', '.join(_ENUMS[column])})", path, column)
            v = _ENUMS[column][v.upper()]
        out.append(int(v))
    return out


def _laser_ids(path: Path, table, what: str) -> list[int]:
    """The key.laser_name column as enum numbers, each at most once: a second row would double the
    laser's points or silently replace its calibration."""
    ids = _enum_ids(path, table, LASER)
    if (twice := _twice(ids)) is not None:
        raise DipirError(f"more than one row for {what}, {LASER}={twice}", path)
    return ids


def _floats(table, column: str, row: int = 0) -> np.ndarray:
    """A list / fixed-size-list cell of float32 or float64 as a float64 array."""
    cell = table.column(column)[row]
    if not cell.is_valid:
        return np.zeros(0)
    return np.asarray(cell.values.to_numpy(zero_copy_only=False), dtype=np.float64)


def _matrix4(path: Path, table, column: str, row: int = 0) -> np.ndarray:
    """A 4x4 transform cell (16 numbers, row-major); a null or other-sized cell names the column."""
    v = _floats(table, column, row)
    if v.size != 16:
        raise DipirError(f"expected a 4x4 transform (16 numbers), got {v.size}", path, column)
    if not np.isfinite(v).all():
        raise DipirError("expected a 4x4 transform of finite numbers (a null or NaN entry)", path, column)
    return v.reshape(4, 4)


def _shape(path: Path, table, column: str, row: int) -> tuple[int, ...]:
    """A range image's shape cell: whole numbers >= 0 (a null entry or NaN names the column)."""
    v = _floats(table, column, row)
    if not (np.isfinite(v).all() and (v >= 0).all() and (v == np.round(v)).all()):
        raise DipirError(f"expected a shape of whole numbers, got {v.tolist()}", path, column)
    return tuple(int(x) for x in v)


def _scalar(path: Path, table, column: str, row: int = 0, kind=float):
    """A finite number cell (a whole one for kind=int); null, NaN or not a number names the column
    (pandas writes a missing int as NaN)."""
    v = table.column(column)[row].as_py()
    if v is None or isinstance(v, (bool, str, bytes)):
        raise DipirError(f"expected a number, got {v!r}", path, column)
    if not np.isfinite(v) or (kind is int and v != int(v)):
        raise DipirError(f"expected {'a whole' if kind is int else 'a finite'} number, got {v!r}", path, column)
    return kind(v)


def _one(path, table, what: str):
    """`table` if it holds exactly one row: a second one would be silently ignored."""
    if table.num_rows == 0:
        raise DipirError(f"no row for {what}", path)
    if table.num_rows > 1:
        raise DipirError(f"more than one row for {what}", path)
    return table


def _twice(values):
    """The first value that occurs more than once in `values`, else None."""
    seen = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    return None


def frame_timestamps(root: str | Path, segment: str, camera: str | int = "FRONT") -> list[int]:
    root = Path(root)
    path, t = _read(root, "camera_image", segment, [TS], [(SEG, "=", segment), (CAM, "=", camera_id(camera))])
    stamps = sorted(int(x) for x in t.column(TS).to_pylist())
    if (twice := _twice(stamps)) is not None:  # e.g. shards concatenated twice: frame i would be another frame's image
        raise DipirError(f"segment {segment} has more than one image from camera {camera_name(camera)} at "
                         f"timestamp {twice}",
                         path, TS)
    return stamps


def read_frame(root: str | Path, index: int, camera: str | int = "FRONT", segment: str | None = None,
               timestamp: int | None = None) -> WaymoFrame:
    """Frame `index` (in timestamp order) of `segment` (default: the first under root)."""
    root = Path(root)
    segment = segment or _first_segment(root)
    cam = camera_id(camera)
    if timestamp is None:
        stamps = frame_timestamps(root, segment, cam)
        if not stamps:
            raise DipirError(f"segment {segment} has no images from camera {camera}",
                             root / "camera_image" / f"{segment}.parquet", CAM)
        if not 0 <= index < len(stamps):
            raise DipirError(f"segment {segment} has {len(stamps)} frames, no frame {index}", root / "camera_image",
                             "frame")
        timestamp = stamps[index]
    where = f"{SEG}={segment}, {TS}={timestamp}"
    frame_f = [(SEG, "=", segment), (TS, "=", timestamp)]

    path, t = _read(root, "camera_image", segment, [f"{IMG}.image"], frame_f + [(CAM, "=", cam)])
    image = _one(path, t, where).column(f"{IMG}.image")[0].as_py()
    if not isinstance(image, bytes):
        raise DipirError(f"{where}: expected the JPEG's bytes, got {type(image).__name__}", path, f"{IMG}.image")

    cols = [f"{CCAL}.intrinsic.{k}" for k in INTRINSIC] + [f"{CCAL}.extrinsic.transform", f"{CCAL}.width",
                                                           f"{CCAL}.height"]
    path, t = _read(root, "camera_calibration", segment, cols, [(SEG, "=", segment), (CAM, "=", cam)])
    _one(path, t, f"{SEG}={segment}, {CAM}={cam}")
    calib = CameraCalibration(
        name=cam, intrinsic=np.array([_scalar(path, t, f"{CCAL}.intrinsic.{k}") for k in INTRINSIC]),
        extrinsic=_matrix4(path, t, f"{CCAL}.extrinsic.transform"),
        width=_scalar(path, t, f"{CCAL}.width", kind=int), height=_scalar(path, t, f"{CCAL}.height", kind=int))

    path, t = _read(root, "vehicle_pose", segment, [f"{VPOSE}.world_from_vehicle.transform"], frame_f)
    pose = _matrix4(path, _one(path, t, where), f"{VPOSE}.world_from_vehicle.transform")

    frame = WaymoFrame(segment=segment, timestamp_micros=int(timestamp), pose=pose, camera=calib, image=image,
                       lasers=_read_lasers(root, segment, frame_f, where), source=str(root), where=where,
                       time_of_day=read_time_of_day(root, segment, timestamp))
    return frame.check({"intrinsic": f"camera_calibration: {CCAL}.intrinsic",
                        "size": f"camera_calibration: {CCAL}.width/height",
                        "extrinsic": f"camera_calibration: {CCAL}.extrinsic.transform",
                        "pose": f"vehicle_pose: {VPOSE}.world_from_vehicle.transform",
                        "laser_extrinsic": f"lidar_calibration: {LCAL}.extrinsic.transform",
                        "range_image": f"lidar: {LID}.range_image_return1.shape",
                        # min/max are refused by _scalar already: only the values can be NaN here
                        "inclinations": f"lidar_calibration: {LCAL}.beam_inclination.values",
                        "pixel_pose": f"lidar_pose: {LPOSE}.range_image_return1.values",
                        "intensity": f"lidar: {LID}.range_image_return1.values"})


def read_time_of_day(root: str | Path, segment: str, timestamp: int | None = None) -> str:
    """The segment's `[StatsComponent].time_of_day` ("Day", "Dawn/Dusk", "Night"), or "" when the
    optional stats component (or this segment's file in it) is absent. The value is per frame in the
    files but set per segment; the frame's own row is preferred, else the segment's first non-empty."""
    root = Path(root)
    if not (root / "stats" / f"{segment}.parquet").is_file():
        return ""
    path, t = _read(root, "stats", segment, [TS, f"{STATS}.time_of_day"], [(SEG, "=", segment)])
    stamps, values = t.column(TS).to_pylist(), t.column(f"{STATS}.time_of_day").to_pylist()
    rows = [(int(ts), str(v or "")) for ts, v in zip(stamps, values)]
    if timestamp is not None and stamps.count(timestamp) > 1:  # which of them is the frame's?
        raise DipirError(f"more than one row for {SEG}={segment}, {TS}={timestamp}", path)
    own = [v for ts, v in rows if ts == timestamp and v]
    return own[0] if own else next((v for _, v in rows if v), "")


def _read_lasers(root: Path, segment: str, frame_f, where: str) -> list[LaserScan]:
    if not (root / "lidar" / f"{segment}.parquet").is_file():
        return []  # camera-only download: no range images (the ground then comes from calibration)
    lpath, lid = _read(root, "lidar", segment, [LASER, f"{LID}.range_image_return1.values",
                                                 f"{LID}.range_image_return1.shape"], frame_f)
    cpath, cal = _read(root, "lidar_calibration", segment, [LASER, f"{LCAL}.extrinsic.transform",
                                                             f"{LCAL}.beam_inclination.min",
                                                             f"{LCAL}.beam_inclination.max",
                                                             f"{LCAL}.beam_inclination.values"], [(SEG, "=", segment)])
    cal_rows = {n: i for i, n in enumerate(_laser_ids(cpath, cal, f"{SEG}={segment}"))}
    lasers = []
    for i, name in enumerate(_laser_ids(lpath, lid, where)):
        shape = _shape(lpath, lid, f"{LID}.range_image_return1.shape", i)
        values = _floats(lid, f"{LID}.range_image_return1.values", i).astype(np.float32)
        if len(shape) != 3 or int(np.prod(shape)) != values.size:
            raise DipirError(f"range image of laser {name} has {values.size} values for shape {list(shape)}",
                             lpath, f"{LID}.range_image_return1.values")
        if name not in cal_rows:
            raise DipirError(f"no calibration for laser {name}", cpath, LASER)
        j = cal_rows[name]
        vals = _floats(cal, f"{LCAL}.beam_inclination.values", j)
        try:
            incl = row_inclinations(shape[0], vals, _scalar(cpath, cal, f"{LCAL}.beam_inclination.min", j),
                                    _scalar(cpath, cal, f"{LCAL}.beam_inclination.max", j))
        except ValueError as err:
            raise DipirError(str(err), cpath, f"{LCAL}.beam_inclination.values") from None
        pixel_pose = None
        if name == TOP:
            # Required: without its per-pixel pose the TOP sweep would not be motion-compensated.
            ppath, pose = _read(root, "lidar_pose", segment, [f"{LPOSE}.range_image_return1.values",
                                                              f"{LPOSE}.range_image_return1.shape"],
                                frame_f + [(LASER, "=", TOP)])
            _one(ppath, pose, f"{where}, {LASER}={TOP}")
            pshape = _shape(ppath, pose, f"{LPOSE}.range_image_return1.shape", 0)
            pv = _floats(pose, f"{LPOSE}.range_image_return1.values")
            if pshape != shape[:2] + (6,) or pv.size != int(np.prod(pshape)):
                raise DipirError(f"range image pose has shape {list(pshape)}, expected {list(shape[:2]) + [6]}",
                                 ppath, f"{LPOSE}.range_image_return1.shape")
            pixel_pose = pv.reshape(pshape)
        lasers.append(LaserScan(name=name, range_image=values.reshape(shape),
                                extrinsic=_matrix4(cpath, cal, f"{LCAL}.extrinsic.transform", j),
                                inclinations=incl, pixel_pose=pixel_pose))
    return lasers


def _first_segment(root: Path) -> str:
    segs = segments(root)
    if not segs:
        raise DipirError("no segments (no .parquet files in camera_image/)", root)
    return segs[0]


def iter_frames(root: str | Path, camera: str | int = "FRONT", segment: str | None = None):
    """Frames of one segment in timestamp order, one frame's rows in memory at a time."""
    root = Path(root)
    segment = segment or _first_segment(root)
    for ts in frame_timestamps(root, segment, camera):
        yield read_frame(root, 0, camera, segment, timestamp=ts)
