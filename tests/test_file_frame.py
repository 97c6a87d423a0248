"""The `file` estimator's `frame: camera` option: camera-relative maps (DiffusionLight, StyleLight)
rotated into the scene's world with the scene's camera."""

from __future__ import annotations

import numpy as np
import pytest

from dipir.data.synth_polyhaven import SynthHDRIConfig, direction, sky_hdri
from dipir.errors import DipirError
from dipir.estimators import build_estimator
from dipir.estimators.file import mitsuba_to_blender
from dipir.rendering.hdr import write_hdr
from dipir.rendering.lighting import dominant_direction
from dipir.scene.contract import Camera, ObjectSpec, Plane, Scene

CFG = SynthHDRIConfig(width=256, height=128, sun_radius_deg=2.0)


def _rot(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Camera-to-world rotation: roll about the view axis, then pitch (positive: up), then yaw about +Y."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])  # +Z tips towards +Y
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _scene(tmp_path, rot: np.ndarray, env_world: np.ndarray) -> Scene:
    from PIL import Image

    tmp_path.mkdir(parents=True, exist_ok=True)
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, [0, 1.5, 0]
    Image.fromarray(np.full((32, 48, 3), 128, np.uint8)).save(tmp_path / "background.png")
    return Scene(id="cam", background=tmp_path / "background.png",
                 camera=Camera(to_world=m, width=48, height=32, fov_y_deg=60.0),
                 plane=Plane(point=np.zeros(3), normal=np.array([0.0, 1, 0])),
                 object=ObjectSpec(mesh="builtin:vase", position=np.array([0, 0, 3.0]), cls="vase"),
                 envmap=write_hdr(tmp_path / "envmap.exr", env_world))


def _env(result) -> np.ndarray:
    return np.asarray(getattr(result, "envmap", result))


def _angle(a, b) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


@pytest.mark.parametrize("convention", ["mitsuba", "blender"])
@pytest.mark.parametrize("yaw,pitch,roll", [(40.0, -20.0, 0.0), (-130.0, 10.0, 15.0)])
def test_camera_frame_sun_lands_where_the_oracle_has_it(tmp_path, convention, yaw, pitch, roll):
    """A known sun, written in the camera's frame, comes back in the world within 2° of the oracle's."""
    rot = _rot(yaw, pitch, roll)
    sun_world = direction(35.0, 200.0)
    scene = _scene(tmp_path / "s", rot, sky_hdri(CFG, sun_world))
    cam_map = sky_hdri(CFG, rot.T @ sun_world)  # the same sun, seen from the camera (its local frame)
    folder = tmp_path / "maps"
    folder.mkdir()
    write_hdr(folder / "cam.exr", mitsuba_to_blender(cam_map) if convention == "blender" else cam_map)

    oracle = _env(build_estimator("oracle", {"height": 64}).estimate(scene))
    got = _env(build_estimator("file", {"folder": str(folder), "height": 64, "convention": convention,
                                        "frame": "camera"}).estimate(scene))
    d_oracle, d_got = dominant_direction(oracle), dominant_direction(got)
    assert _angle(d_oracle, sun_world) < 2.0
    assert _angle(d_got, d_oracle) < 2.0, (d_got, d_oracle)
    # Read as a world map it would be wrong by the camera's rotation (the bug this option fixes).
    as_world = _env(build_estimator("file", {"folder": str(folder), "height": 64, "convention": convention})
                    .estimate(scene))
    assert _angle(dominant_direction(as_world), d_oracle) > 10.0


@pytest.mark.parametrize("u,v,local", [(0.75, 0.5, [-1.0, 0, 0]),  # right of centre: the camera's right
                                       (0.5, 0.25, [0, np.sqrt(0.5), np.sqrt(0.5)]),  # above centre: 45° up
                                       (0.25, 0.5, [1.0, 0, 0])])  # left of centre: the camera's left
def test_camera_frame_layout_as_documented(tmp_path, u, v, local):
    """The layout the docstring states, written without the project's equirect helpers: image centre
    = forward, top = up, columns right of the centre = the camera's right."""
    rot = _rot(25.0, -15.0, 0.0)
    h, w = 64, 128
    rows, cols = np.meshgrid(np.arange(h) / (h - 1), (np.arange(w) + 0.5) / w, indexing="ij")
    blob = np.exp(-(((cols - u) * 360) ** 2 + ((rows - v) * 180) ** 2) / (2 * 2.0**2))  # a 2° lobe
    img = (0.05 + 500 * blob)[..., None].repeat(3, -1).astype(np.float32)
    folder = tmp_path / "maps"
    folder.mkdir()
    write_hdr(folder / "cam.exr", img)
    scene = _scene(tmp_path / "s", rot, np.ones((h, w, 3), np.float32))
    got = _env(build_estimator("file", {"folder": str(folder), "frame": "camera"}).estimate(scene))
    assert _angle(dominant_direction(got), rot @ np.asarray(local)) < 2.0


def test_world_frame_is_the_default_and_bad_frames_are_errors(tmp_path):
    rot = _rot(60.0, -10.0, 0.0)
    env = sky_hdri(CFG, direction(30.0, 90.0))
    scene = _scene(tmp_path / "s", rot, env)
    folder = tmp_path / "maps"
    folder.mkdir()
    write_hdr(folder / "cam.exr", env)
    est = build_estimator("file", {"folder": str(folder)})
    assert est.frame == "world"
    assert np.allclose(_env(est.estimate(scene)), _env(build_estimator("oracle", {}).estimate(scene)), rtol=1e-5)
    with pytest.raises(DipirError) as err:
        build_estimator("file", {"folder": str(folder), "frame": "sensor"})
    assert err.value.field == "options.frame" and "camera" in str(err.value)
    with pytest.raises(DipirError) as err:
        build_estimator("file", {"folder": str(folder), "frame": "camera"}).load("cam")
    assert err.value.field == "options.frame" and "cam.exr" in str(err.value)
