"""Frames and planes: Waymo vehicle/camera frames -> the scene world (Mitsuba, +Y up), camera
projection, and the proxy-plane fit (open3d RANSAC + least-squares refinement).

Frames (docs/FORMATS.md):
- Waymo vehicle frame: x forward, y left, z up. Waymo camera frame: x forward (optical axis),
  y left, z up.
- OpenCV camera: x right, y down, z forward. Mitsuba camera: z forward, y up, x left
  (so Mitsuba = OpenCV with x and y negated).
- Scene world for Waymo (Mitsuba world, +Y up): world (X, Y, Z) = vehicle (y, z, x) after a yaw
  about the vehicle z that turns the chosen camera's heading onto world +Z, with the origin on the
  vehicle's z = 0 plane directly below the camera. So the camera sits at (0, h, 0) looking roughly +Z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dipir.errors import DipirError

# Waymo camera frame -> OpenCV camera frame, as a right-multiplied change of basis (docs/FORMATS.md).
WAYMO_CAM_TO_OPENCV = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
OPENCV_TO_MITSUBA_CAM = np.diag([-1.0, -1.0, 1.0, 1.0])
# Vehicle axes -> scene-world axes: world X = vehicle y (left), Y = z (up), Z = x (forward). det = +1.
VEHICLE_AXES_TO_WORLD = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def waymo_cam_to_mitsuba_cam(cam_to_vehicle_waymo: np.ndarray) -> np.ndarray:
    """Camera-to-vehicle in Mitsuba's camera convention, from Waymo's camera-to-vehicle extrinsic."""
    return np.asarray(cam_to_vehicle_waymo, dtype=np.float64) @ WAYMO_CAM_TO_OPENCV @ OPENCV_TO_MITSUBA_CAM


def world_from_vehicle(cam_to_vehicle_waymo: np.ndarray) -> np.ndarray:
    """The scene world (camera-aligned, +Y up) from the vehicle frame, for the given camera."""
    e = np.asarray(cam_to_vehicle_waymo, dtype=np.float64)
    fwd = e[:3, 0]  # Waymo camera x = optical axis, in vehicle coordinates
    yaw = np.arctan2(fwd[1], fwd[0])
    c, s = np.cos(-yaw), np.sin(-yaw)
    rz = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    t = np.eye(4)
    t[:2, 3] = -e[:2, 3]
    return VEHICLE_AXES_TO_WORLD @ rz @ t


def is_rigid(m: np.ndarray, proper: bool = True) -> bool:
    """A finite 4x4 rotation + translation: orthonormal 3x3 block (no scale or shear), last row 0 0 0 1
    and, when `proper`, no reflection (determinant +1)."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        return False
    r = m[:3, :3]
    ok = np.allclose(m[3], [0, 0, 0, 1], atol=1e-6) and np.allclose(r.T @ r, np.eye(3), atol=1e-4)
    return bool(ok and (not proper or np.linalg.det(r) > 0))


def transform_points(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.asarray(p, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]


def transform_plane(m: np.ndarray, point: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A plane (point, normal) under a rigid transform m."""
    n = m[:3, :3] @ np.asarray(normal, dtype=np.float64)
    return transform_points(m, np.asarray(point)[None])[0], n / np.linalg.norm(n)


def project(camera, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) (u right, v down, pixel centres at +0.5) and depth (N,) of world
    points seen by a scene Camera (Mitsuba convention: local +Z forward, +X left, +Y up)."""
    inv = np.linalg.inv(camera.to_world)
    p = transform_points(inv, points_world)
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.stack([-p[:, 0] / z, -p[:, 1] / z, np.ones_like(z)], axis=1)  # OpenCV normalized coords
    uv = cv @ camera.K().T
    return uv[:, :2], z


def in_view(camera, points_world: np.ndarray, margin: float = 0.0) -> np.ndarray:
    uv, z = project(camera, points_world)
    return (z > 0) & (uv[:, 0] >= -margin) & (uv[:, 0] <= camera.width + margin) & \
        (uv[:, 1] >= -margin) & (uv[:, 1] <= camera.height + margin)


# ---------------------------------------------------------------------------------------------
# Plane fit


@dataclass
class PlaneFit:
    normal: np.ndarray  # unit, oriented towards `up`
    offset: float  # plane: normal · x + offset = 0
    inliers: np.ndarray  # indices into the input points
    rms: float  # RMS distance of the inliers to the refined plane

    @property
    def point(self) -> np.ndarray:
        return -self.offset * self.normal

    def distance(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points) @ self.normal + self.offset


def fit_plane(points: np.ndarray, distance_threshold: float = 0.08, num_iterations: int = 500,
              min_inliers: int = 50, min_inlier_fraction: float = 0.2, up=(0.0, 1.0, 0.0),
              max_tilt_deg: float = 30.0, seed: int = 0, source=None, ransac_points: int = 8000) -> PlaneFit:
    """Ground plane through `points` (N, 3): open3d RANSAC, then a least-squares (SVD) plane on the
    RANSAC inliers, re-selected once with the refined plane. Raises DipirError when the best plane
    has too few inliers or is tilted more than `max_tilt_deg` from `up` (e.g. a wall fills the view)."""
    import open3d as o3d

    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < max(3, min_inliers):
        raise DipirError(f"no ground plane: only {len(pts)} LiDAR points in front of the camera "
                         f"(need {max(3, min_inliers)})", source, "points")
    o3d.utility.random.seed(int(seed))
    # RANSAC only needs a hypothesis: run it on at most `ransac_points` points, refine on all of them.
    sub = pts
    if len(pts) > ransac_points:
        sub = pts[np.random.default_rng(seed).choice(len(pts), ransac_points, replace=False)]
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(sub))
    model, idx = pc.segment_plane(distance_threshold=distance_threshold, ransac_n=3, num_iterations=num_iterations)
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) < 3:
        raise DipirError("no ground plane: RANSAC found no plane", source, "points")
    pts_sub = sub
    up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    normal, offset = _least_squares_plane(pts_sub[idx])
    # One re-selection with the refined plane tightens the inlier set without RANSAC's noise.
    idx = np.nonzero(np.abs(pts @ normal + offset) < distance_threshold)[0]
    if len(idx) >= 3:
        normal, offset = _least_squares_plane(pts[idx])
    if normal @ up < 0:
        normal, offset = -normal, -offset
    need = max(min_inliers, int(np.ceil(min_inlier_fraction * len(pts))))
    if len(idx) < need:
        raise DipirError(f"no ground plane: best plane has {len(idx)} inliers of {len(pts)} points "
                         f"(need {need})", source, "points")
    tilt = np.degrees(np.arccos(np.clip(normal @ up, -1, 1)))
    if tilt > max_tilt_deg:
        raise DipirError(f"no ground plane: the dominant plane is tilted {tilt:.0f}° from up "
                         f"(a wall or obstacle fills the view; limit {max_tilt_deg:.0f}°)", source, "points")
    rms = float(np.sqrt(np.mean((pts[idx] @ normal + offset) ** 2)))
    return PlaneFit(normal=normal, offset=float(offset), inliers=idx, rms=rms)


def _least_squares_plane(p: np.ndarray) -> tuple[np.ndarray, float]:
    # Total least squares: the normal is the direction of least variance of the centred points.
    c = p.mean(axis=0)
    _, _, vt = np.linalg.svd(p - c, full_matrices=False)
    n = vt[-1] / np.linalg.norm(vt[-1])
    return n, float(-n @ c)


def write_ply_points(path, points: np.ndarray, intensity: np.ndarray | None = None):
    """Binary little-endian PLY with float32 x, y, z (and intensity); atomic."""
    from pathlib import Path

    path = Path(path)
    pts = np.asarray(points, dtype=np.float32)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if intensity is not None:
        fields.append(("intensity", "f4"))
    rec = np.empty(len(pts), dtype=fields)
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if intensity is not None:
        rec["intensity"] = intensity
    header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % len(pts)
    header += "".join(f"property float {name}\n" for name, _ in fields) + "end_header\n"
    from dipir.io import atomic_file

    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return path
