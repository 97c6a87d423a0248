"""Frames (Waymo vehicle/camera -> scene world) and the LiDAR proxy-plane fit."""

from __future__ import annotations

import numpy as np
import pytest

from dipir.data.range_image import euler_to_rotation
from dipir.errors import DipirError
from dipir.scene.geometry import (
    WAYMO_CAM_TO_OPENCV,
    fit_plane,
    project,
    transform_points,
    waymo_cam_to_mitsuba_cam,
    world_from_vehicle,
)


def _extrinsic(yaw, pitch, t):
    e = np.eye(4)
    e[:3, :3] = euler_to_rotation(0.0, pitch, yaw)
    e[:3, 3] = t
    return e


def test_waymo_camera_to_mitsuba_axes():
    e = _extrinsic(0.4, 0.1, (1.5, 0.2, 1.6))
    m = waymo_cam_to_mitsuba_cam(e)
    # Mitsuba camera +Z (forward) = Waymo camera +x, +Y (up) = Waymo +z, +X (image left) = Waymo +y.
    assert np.allclose(m[:3, 2], e[:3, 0]) and np.allclose(m[:3, 1], e[:3, 2]) and np.allclose(m[:3, 0], e[:3, 1])
    assert np.isclose(np.linalg.det(m[:3, :3]), 1.0)
    # OpenCV intermediate: x right (= −Waymo y), y down (= −Waymo z), z forward.
    cv = e @ WAYMO_CAM_TO_OPENCV
    assert np.allclose(cv[:3, 0], -e[:3, 1]) and np.allclose(cv[:3, 1], -e[:3, 2]) and np.allclose(cv[:3, 2], e[:3, 0])


@pytest.mark.parametrize("yaw", [0.0, 0.8, -2.0])
def test_scene_projection_matches_waymo_pinhole(yaw):
    from dipir.scene.contract import Camera

    e = _extrinsic(yaw, 0.05, (1.2, -0.3, 1.7))
    f_u, f_v, c_u, c_v = 900.0, 880.0, 640.0, 400.0
    w_from_v = world_from_vehicle(e)
    cam = Camera(to_world=w_from_v @ waymo_cam_to_mitsuba_cam(e), width=1280, height=800,
                 intrinsics=(f_u, f_v, c_u, c_v))
    rng = np.random.default_rng(1)
    p_cam = np.stack([rng.uniform(3, 30, 50), rng.uniform(-5, 5, 50), rng.uniform(-2, 2, 50)], 1)  # Waymo camera
    p_vehicle = transform_points(e, p_cam)
    # Waymo's pinhole: u = c_u − f_u · y / x, v = c_v − f_v · z / x (camera frame x forward, y left, z up).
    uv_waymo = np.stack([c_u - f_u * p_cam[:, 1] / p_cam[:, 0], c_v - f_v * p_cam[:, 2] / p_cam[:, 0]], 1)
    uv, depth = project(cam, transform_points(w_from_v, p_vehicle))
    assert np.allclose(uv, uv_waymo, atol=1e-6) and np.allclose(depth, p_cam[:, 0])
    # The scene world: +Y is vehicle up, the camera sits above the origin and looks along +Z.
    assert np.allclose(w_from_v[:3, :3] @ [0, 0, 1], [0, 1, 0])
    assert np.allclose(cam.to_world[[0, 2], 3], 0) and np.isclose(cam.to_world[1, 3], 1.7)
    fwd = cam.to_world[:3, 2]
    assert abs(fwd[0]) < 1e-9 and fwd[2] > 0.99


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plane_fit_on_synthetic_segments_with_outliers_and_noise(tmp_path, seed):
    from dipir.data.synth_waymo import SynthWaymoConfig, write_segments
    from dipir.data.waymo import make_scene
    from dipir.scene.contract import load_scene

    cfg = SynthWaymoConfig.small(render=False, top_height=64, top_width=512, noise_std=0.02, outlier_fraction=0.10,
                                 tilt_deg=3.0, pitch_deg=1.0)
    seg = write_segments(tmp_path / "w", "v1", segments=1, frames=1, seed=seed, config=cfg)[0]
    s = load_scene(make_scene(seg, tmp_path / "scene", frame_index=0))
    t = s.provenance["truth"]
    n_true, p_true = np.asarray(t["plane_normal"]), np.asarray(t["plane_point"])
    angle = np.degrees(np.arccos(np.clip(n_true @ s.plane.normal, -1, 1)))
    # Height of the camera above each plane (the distance that matters for insertion).
    o = s.camera.to_world[:3, 3]
    dh = abs((o - p_true) @ n_true - (o - s.plane.point) @ s.plane.normal)
    print(f"seed {seed}: plane angle {angle:.3f} deg, height error {dh * 100:.2f} cm")
    assert angle < 1.0 and dh < 0.02, (angle, dh)
    # The truth is tilted: a fit that ignored the data (normal = +Y) would fail the angle test.
    assert np.degrees(np.arccos(n_true[1])) > 1.5


def test_plane_fit_refines_ransac():
    rng = np.random.default_rng(3)
    n = np.array([0.05, 1.0, -0.03])
    n /= np.linalg.norm(n)
    xz = rng.uniform(-10, 10, (3000, 2))
    y = -(n[0] * xz[:, 0] + n[2] * xz[:, 1] + 0.2) / n[1]
    pts = np.stack([xz[:, 0], y, xz[:, 1]], 1) + rng.normal(0, 0.02, (3000, 3))
    out = rng.uniform(-10, 10, (300, 3))
    fit = fit_plane(np.concatenate([pts, out]), seed=0)
    assert np.degrees(np.arccos(fit.normal @ n)) < 0.2 and abs(fit.offset - 0.2) < 0.005
    assert fit.normal[1] > 0 and len(fit.inliers) >= 2900


def test_too_few_points():
    with pytest.raises(DipirError, match="no ground plane"):
        fit_plane(np.zeros((10, 3)))
