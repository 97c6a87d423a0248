"""Waymo Open Dataset v1 reader: a TFRecord of `Frame` protos, streamed one record at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dipir.data.range_image import decode_matrix_float, row_inclinations
from dipir.data.tfrecord import iter_records
from dipir.data.waymo_frame import CameraCalibration, LaserScan, WaymoFrame
from dipir.data.waymo_protos import camera_id, camera_name, dataset_pb2
from dipir.errors import DipirError

TOP = 1


def _matrix4(values, path, where) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.size != 16:
        raise DipirError(f"expected a 4x4 transform, got {v.size} numbers", path, where)
    return v.reshape(4, 4)


def parse_frame(data: bytes, camera: str | int = "FRONT", path: str | Path = "", offset: int = 0,
                with_lidar: bool = True) -> WaymoFrame:
    """Decode one serialized `Frame` into a WaymoFrame for the chosen camera."""
    pb = dataset_pb2()
    where = f"record at byte {offset}"
    frame = pb.Frame()
    try:
        frame.ParseFromString(data)
    except Exception as err:  # protobuf DecodeError
        raise DipirError(f"not a Waymo Frame proto ({err.__class__.__name__})", path, where) from None
    if not frame.images and not frame.context.camera_calibrations:
        # A tf.Example or a Motion Scenario parses as a Frame too (protobuf skips unknown fields),
        # with nothing a Frame must have.
        raise DipirError("not a Waymo Frame: the record has no camera images or calibrations (a Waymo Motion "
                         "record or another tf.Example?)", path, where)
    cam = camera_id(camera)
    calib = next((c for c in frame.context.camera_calibrations if c.name == cam), None)
    image = next((im for im in frame.images if im.name == cam), None)
    if calib is None or image is None:
        have = sorted({c.name for c in frame.context.camera_calibrations} & {im.name for im in frame.images})
        raise DipirError(f"frame has no {'calibration' if calib is None else 'image'} for camera {camera} "
                         f"(has: {', '.join(camera_name(n) for n in have) or 'none'})", path, where)
    if len(calib.intrinsic) != 9:
        raise DipirError(f"camera intrinsic has {len(calib.intrinsic)} values, expected 9", path, where)
    cc = CameraCalibration(name=cam, intrinsic=np.asarray(calib.intrinsic, dtype=np.float64),
                           extrinsic=_matrix4(calib.extrinsic.transform, path, where),
                           width=int(calib.width), height=int(calib.height))
    lasers = []
    if with_lidar:
        lcal = {c.name: c for c in frame.context.laser_calibrations}
        for laser in frame.lasers:
            if not laser.ri_return1.range_image_compressed:
                continue
            field = f"{where}: laser {laser.name}"
            ri = decode_matrix_float(laser.ri_return1.range_image_compressed, path, field)
            if ri.ndim != 3 or ri.shape[2] < 1:
                raise DipirError(f"range image has shape {list(ri.shape)}, expected [H, W, 4]", path, field)
            if laser.name not in lcal:
                raise DipirError("no calibration for this laser", path, field)
            c = lcal[laser.name]
            try:
                incl = row_inclinations(ri.shape[0], list(c.beam_inclinations), c.beam_inclination_min,
                                        c.beam_inclination_max)
            except ValueError as err:
                raise DipirError(str(err), path, field) from None
            pose = None
            if laser.name == TOP:  # required: without its per-pixel pose the sweep is not motion-compensated
                if not laser.ri_return1.range_image_pose_compressed:
                    raise DipirError("TOP laser has no per-pixel pose (ri_return1.range_image_pose_compressed)",
                                     path, field)
                pose = decode_matrix_float(laser.ri_return1.range_image_pose_compressed, path, field)
                if pose.shape != ri.shape[:2] + (6,):
                    raise DipirError(f"range image pose has shape {list(pose.shape)}, expected "
                                     f"{list(ri.shape[:2]) + [6]}", path, field)
            lasers.append(LaserScan(name=int(laser.name), range_image=ri, extrinsic=_matrix4(c.extrinsic.transform,
                                    path, field), inclinations=incl, pixel_pose=pose))
    return WaymoFrame(segment=frame.context.name, timestamp_micros=int(frame.timestamp_micros),
                      pose=_matrix4(frame.pose.transform, path, where), camera=cc, image=bytes(image.image),
                      lasers=lasers, source=str(path), where=where,
                      time_of_day=frame.context.stats.time_of_day).check(_fields(camera))


def _fields(camera) -> dict[str, str]:
    """The proto fields `WaymoFrame.check` names."""
    cal = f"context.camera_calibrations[{camera}]"
    return {"intrinsic": f"{cal}.intrinsic", "size": f"{cal}.width/height", "extrinsic": f"{cal}.extrinsic.transform",
            "pose": "pose.transform", "laser_extrinsic": "context.laser_calibrations.extrinsic.transform",
            "range_image": "lasers.ri_return1.range_image_compressed",
            "inclinations": "context.laser_calibrations.beam_inclinations/beam_inclination_min/max",
            "pixel_pose": "lasers.ri_return1.range_image_pose_compressed",
            "intensity": "lasers.ri_return1.range_image_compressed"}


def iter_frames(path: str | Path, camera: str | int = "FRONT", with_lidar: bool = True) -> Iterator[WaymoFrame]:
    """Frames of a v1 segment file in order; one record in memory at a time."""
    for offset, data in iter_records(path):
        yield parse_frame(data, camera, path, offset, with_lidar)


def read_frame(path: str | Path, index: int, camera: str | int = "FRONT") -> WaymoFrame:
    """Frame `index` (0-based) of a v1 segment; earlier records are skipped without decoding."""
    if index < 0:
        raise DipirError(f"frame index must be >= 0, got {index}", path, "frame")
    n = 0
    for offset, data in iter_records(path):
        if n == index:
            return parse_frame(data, camera, path, offset)
        n += 1
    raise DipirError(f"segment has {n} frames, no frame {index}", path, "frame")
