"""Small synthetic insertion scenes with known lighting, for tests, benchmarks and first tries.

- `box_scene`: a box on a ground plane seen from above, lit by one SG sun (`sun_envmap`) + sky;
- `crop_scene`: the background is a perspective crop of a sky + sun env map (`sky_envmap`), so the
  image-based baselines have something real to read;
- `tiny_scenes`: `n` 48x32 scene folders with uniform random skies (batch-run plumbing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from dipir.estimators.common import pixel_directions
from dipir.rendering.hdr import direction_to_pixel, equirect_directions, write_hdr
from dipir.rendering.srgb import linear_to_srgb
from dipir.scene.contract import Camera, ObjectSpec, Plane, Scene, look_at

SUN = np.array([0.7, 0.65, 0.2])
SUN = SUN / np.linalg.norm(SUN)


def sun_envmap(height: int = 64, width: int = 128, sun=SUN, sun_color=(14.0, 13.0, 11.0),
               sharpness: float = 0.2, sky=(0.12, 0.14, 0.18)) -> np.ndarray:
    """One SG sun lobe plus a uniform sky, in the dipir.rendering.hdr convention."""
    d = equirect_directions(height, width).astype(np.float64)
    g = np.exp((d @ np.asarray(sun, float) - 1) / sharpness**2)[..., None]
    return (g * np.asarray(sun_color) + np.asarray(sky)).astype(np.float32)


def box_scene(root: Path, size: int = 64, with_envmap: bool = True, background=None, cls: str = "car") -> Path:
    """Write scene.yaml + background.png (+ envmap.exr): a box on a ground plane, camera above."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if background is None:
        yy, xx = np.mgrid[0:size, 0:size] / size
        background = np.stack([0.45 + 0.1 * xx, 0.42 + 0.05 * yy, 0.38 + 0.0 * xx], -1)
    Image.fromarray((np.clip(background, 0, 1) * 255).astype(np.uint8)).save(root / "background.png")
    data = {
        "id": root.name,
        "background": "background.png",
        "camera": {"fov_y_deg": 45, "origin": [0.0, 2.2, -4.5], "target": [0.0, 0.4, 0.0]},
        "plane": {"point": [0, 0, 0], "normal": [0, 1, 0], "size": 12},
        "object": {"mesh": "builtin:box", "position": [0, 0, 0], "yaw_deg": 25, "scale": 1.2, "class": cls,
                   "material": {"base_color": [0.6, 0.55, 0.5], "roughness": 0.6}},
    }
    if with_envmap:
        write_hdr(root / "envmap.exr", sun_envmap())
        data["envmap"] = "envmap.exr"
    (root / "scene.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


SUN_DIR = np.array([np.sin(np.radians(-15)) * np.cos(np.radians(15)), np.sin(np.radians(15)),
                    np.cos(np.radians(-15)) * np.cos(np.radians(15))])  # in view: 15° up, 15° to the right


def sky_envmap(height: int = 64, sun_dir=SUN_DIR, sun_strength: float = 4000.0) -> np.ndarray:
    """Blue-ish sky brightening towards the horizon, a grey ground, and a small bright sun lobe."""
    d = equirect_directions(height, 2 * height).astype(np.float64)
    y = d[..., 1]
    sky = np.stack([0.35 + 0.3 * (1 - y), 0.5 + 0.25 * (1 - y), 0.9 + 0.1 * (1 - y)], axis=-1)
    env = np.where((y > 0)[..., None], sky, np.array([0.25, 0.22, 0.2]))
    s = np.asarray(sun_dir, float) / np.linalg.norm(sun_dir)
    env = env + sun_strength * np.exp(-(1 - d @ s) * 3000.0)[..., None]
    return env.astype(np.float32)


def crop_background(env: np.ndarray, cam: Camera, exposure: float = 0.6) -> np.ndarray:
    """Perspective crop of the env map through `cam` (nearest texel), exposed, clipped, sRGB."""
    h, w = env.shape[:2]
    rc = direction_to_pixel(pixel_directions(cam, cam.width, cam.height), h, w)
    r = np.clip(np.rint(rc[..., 0]).astype(int), 0, h - 1)
    c = np.mod(np.rint(rc[..., 1]).astype(int), w)
    return linear_to_srgb(env[r, c] * exposure)


def crop_scene(root: Path, with_gt: bool = True, env: np.ndarray | None = None, scene_id: str = "synth",
               size=(96, 64), yaw_deg: float = 0.0, pitch_deg: float = 3.8, exposure: float = 0.6) -> Scene:
    """A small GT scene: camera 1.5 m up looking along +Z (yawed, pitched up), a box 6 m ahead."""
    root.mkdir(parents=True, exist_ok=True)
    env = sky_envmap() if env is None else env
    yaw = np.radians(yaw_deg)
    fwd = np.array([np.sin(yaw), 0.0, np.cos(yaw)])
    view = fwd * np.cos(np.radians(pitch_deg)) + np.array([0, np.sin(np.radians(pitch_deg)), 0])
    to_world = look_at([0, 1.5, 0], np.array([0, 1.5, 0]) + view)
    cam = Camera(to_world=to_world, width=size[0], height=size[1], fov_y_deg=60.0)
    bg = crop_background(env, cam, exposure)
    Image.fromarray((np.clip(bg, 0, 1) * 255 + 0.5).astype(np.uint8)).save(root / "background.png")
    envmap = None
    if with_gt:
        envmap = write_hdr(root / "envmap.exr", env)
    scene = Scene(id=scene_id, background=root / "background.png", camera=cam,
                  plane=Plane(point=np.zeros(3), normal=np.array([0.0, 1, 0]), size=20.0),
                  object=ObjectSpec(mesh="builtin:box", position=fwd * 6.0, cls="box"),
                  envmap=envmap, source=root / "scene.yaml")
    scene.save(root)
    return scene


def tiny_scenes(root: Path, n: int, with_envmap: bool = True) -> Path:
    """`n` tiny scene folders (48x32 background, a box on the ground plane, optional GT env map)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"scene{i}"
        d.mkdir(parents=True, exist_ok=True)
        bg = (rng.uniform(0.2, 0.8, 3) * 255 * np.ones((32, 48, 3))).astype(np.uint8)
        Image.fromarray(bg).save(d / "background.png")
        env = None
        if with_envmap:
            env = d / "envmap.exr"
            sky = np.ones((16, 32, 3), np.float32) * rng.uniform(0.5, 2.0, 3).astype(np.float32)
            write_hdr(env, sky)
        cam = Camera(to_world=look_at([0, 1.5, 0], [0, 0.5, 6]), width=48, height=32, fov_y_deg=60.0)
        scene = Scene(id=f"scene{i}", background=d / "background.png", camera=cam,
                      plane=Plane(point=np.zeros(3), normal=np.array([0.0, 1.0, 0.0])),
                      object=ObjectSpec(mesh="builtin:box", position=np.array([0.0, 0.0, 6.0]), cls="box"),
                      envmap=env, provenance={"dataset": "test", "condition": "day"})
        scene.save(d)
    return root
