"""Waymo range images -> 3D points, in numpy (the math of Waymo's `range_image_utils`).

- Row inclinations: the calibration's `beam_inclinations` (ascending), or when empty a uniform
  `min + (i + 0.5) / H · (max − min)`; then reversed so row 0 is the highest beam.
- Column azimuths: `az_j = (2 · (W − j − 0.5) / W − 1) · π − atan2(E[1,0], E[0,0])` (E: lidar→vehicle),
  so the columns sweep the vehicle frame from +π to −π whatever the sensor's mounting yaw.
- Sensor point `(r cos az cos incl, r sin az cos incl, r sin incl)`, vehicle point `R_E p + t_E`.
- TOP lidar: each pixel has its own vehicle→global pose (roll, pitch, yaw, x, y, z; rotation
  Rz(yaw)·Ry(pitch)·Rx(roll)); the point goes to global with it and back into the frame's vehicle
  frame with the inverse frame pose (motion compensation).
"""

from __future__ import annotations

import zlib

import numpy as np

from dipir.errors import DipirError


def row_inclinations(height: int, values=None, incl_min: float = 0.0, incl_max: float = 0.0) -> np.ndarray:
    """Inclination (radians) of each range-image row, row 0 the highest."""
    if values is not None and len(values) > 0:
        incl = np.asarray(values, dtype=np.float64)
        if incl.shape != (height,):
            raise ValueError(f"{len(incl)} beam inclinations for a range image of height {height}")
    else:
        incl = incl_min + (np.arange(height) + 0.5) / height * (incl_max - incl_min)
    return incl[::-1].copy()


def column_azimuths(width: int, extrinsic: np.ndarray) -> np.ndarray:
    """Azimuth (radians, sensor frame) of each range-image column."""
    correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (width - np.arange(width) - 0.5) / width
    return (ratios * 2.0 - 1.0) * np.pi - correction


def sensor_directions(inclinations: np.ndarray, azimuths: np.ndarray) -> np.ndarray:
    """Unit ray directions (H, W, 3) in the sensor frame."""
    ci, si = np.cos(inclinations)[:, None], np.sin(inclinations)[:, None]
    ca, sa = np.cos(azimuths)[None], np.sin(azimuths)[None]
    return np.stack(np.broadcast_arrays(ca * ci, sa * ci, si), axis=-1)


def euler_to_rotation(roll, pitch, yaw) -> np.ndarray:
    """Rz(yaw)·Ry(pitch)·Rx(roll), broadcast over the inputs: (..., 3, 3)."""
    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw))
    r = np.empty(np.shape(roll) + (3, 3))
    r[..., 0, 0] = cy * cp
    r[..., 0, 1] = cy * sp * sr - sy * cr
    r[..., 0, 2] = cy * sp * cr + sy * sr
    r[..., 1, 0] = sy * cp
    r[..., 1, 1] = sy * sp * sr + cy * cr
    r[..., 1, 2] = sy * sp * cr - cy * sr
    r[..., 2, 0] = -sp
    r[..., 2, 1] = cp * sr
    r[..., 2, 2] = cp * cr
    return r


def rotation_to_euler(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of euler_to_rotation (away from pitch = ±90°): roll, pitch, yaw."""
    roll = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    pitch = -np.arcsin(np.clip(r[..., 2, 0], -1, 1))
    yaw = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return roll, pitch, yaw


def returns(range_image: np.ndarray) -> np.ndarray:
    """The pixels that hold a return: a finite, positive range (Waymo writes -1 for none; an infinite
    range is no point either)."""
    r = range_image[..., 0]
    return np.isfinite(r) & (r > 0)


def range_image_to_points(range_image: np.ndarray, extrinsic: np.ndarray, inclinations: np.ndarray,
                          pixel_pose: np.ndarray | None = None, frame_pose: np.ndarray | None = None) -> np.ndarray:
    """Points (N, 3) float64 in the frame's vehicle frame from a [H, W, C] range image (channel 0 =
    range). `pixel_pose` [H, W, 6] and `frame_pose` (vehicle→global 4x4) motion-compensate."""
    h, w = range_image.shape[:2]
    rng = range_image[..., 0].astype(np.float64)
    valid = returns(range_image)
    dirs = sensor_directions(inclinations, column_azimuths(w, extrinsic))
    p = dirs[valid] * rng[valid][:, None]
    p = p @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    if pixel_pose is not None:
        if frame_pose is None:
            raise ValueError("a per-pixel pose needs the frame pose")
        pp = pixel_pose[valid].astype(np.float64)
        rot = euler_to_rotation(pp[:, 0], pp[:, 1], pp[:, 2])
        g = np.einsum("nij,nj->ni", rot, p) + pp[:, 3:6]
        inv = np.linalg.inv(frame_pose)
        p = g @ inv[:3, :3].T + inv[:3, 3]
    return p


# ---------------------------------------------------------------------------------------------
# MatrixFloat (zlib-compressed in v1 files)


def decode_matrix_float(blob: bytes, path=None, field: str | None = None) -> np.ndarray:
    """zlib-compressed serialized `MatrixFloat` -> float32 array of its declared shape."""
    from dipir.data.waymo_protos import dataset_pb2

    try:
        raw = zlib.decompress(blob)
    except zlib.error as err:
        raise DipirError(f"range image is not zlib-compressed data ({err})", path, field) from None
    m = dataset_pb2().MatrixFloat()
    try:
        m.ParseFromString(raw)
    except Exception as err:  # protobuf's DecodeError
        raise DipirError(f"range image is not a MatrixFloat ({err.__class__.__name__})", path, field) from None
    shape = tuple(int(d) for d in m.shape.dims)
    data = np.asarray(m.data, dtype=np.float32)
    if not shape or any(d < 0 for d in shape) or int(np.prod(shape)) != data.size:
        raise DipirError(f"MatrixFloat holds {data.size} values for shape {list(shape)}", path, field)
    return data.reshape(shape)


def encode_matrix_float(arr: np.ndarray) -> bytes:
    from dipir.data.waymo_protos import dataset_pb2

    m = dataset_pb2().MatrixFloat()
    m.data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    m.shape.dims.extend(list(arr.shape))
    return zlib.compress(m.SerializeToString())
