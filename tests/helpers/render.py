"""Small scenes and camera geometry shared by the renderer tests (numpy only, independent of Mitsuba)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from dipir.scene.contract import Scene, load_scene


def write_scene(folder: Path, size=(64, 64), origin=(3.0, 3.0, -5.0), target=(0.0, 0.4, 0.0), fov=40.0,
                intrinsics=None, mesh="builtin:box", material=None, bg_rgb=(128, 128, 128), plane_size=30.0) -> Path:
    """A scene folder: a flat grey background, a camera looking at a box on the y = 0 plane."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.full((h, w, 3), bg_rgb, np.uint8)).save(folder / "bg.png")
    cam = {"origin": list(origin), "target": list(target)}
    if intrinsics is not None:
        cam["intrinsics"] = list(intrinsics)
    else:
        cam["fov_y_deg"] = fov
    obj = {"mesh": mesh, "position": [0, 0, 0], "class": "box"}
    if material:
        obj["material"] = material
    data = {"background": "bg.png", "camera": cam,
            "plane": {"point": [0, 0, 0], "normal": [0, 1, 0], "size": plane_size}, "object": obj}
    (folder / "scene.yaml").write_text(yaml.safe_dump(data))
    return folder / "scene.yaml"


def make_scene(folder: Path, **kw) -> Scene:
    return load_scene(write_scene(folder, **kw))


def project(scene: Scene, points, width: int, height: int) -> np.ndarray:
    """World points (..., 3) -> pixel coordinates (..., 2) = (u right, v down) of the resized camera.
    Mitsuba's camera looks along local +Z with +Y up and +X to the image's LEFT."""
    cam = scene.camera.resized(width, height)
    k = cam.K()
    p = np.asarray(points, float)
    local = (p - cam.to_world[:3, 3]) @ cam.to_world[:3, :3]  # inverse of an orthonormal rotation
    u = k[0, 2] - k[0, 0] * local[..., 0] / local[..., 2]
    v = k[1, 2] - k[1, 1] * local[..., 1] / local[..., 2]
    return np.stack([u, v], axis=-1)


def pixel_rays(scene: Scene, width: int, height: int) -> np.ndarray:
    """World directions (h, w, 3) through the pixel centres (inverse of `project`)."""
    cam = scene.camera.resized(width, height)
    k = cam.K()
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    local = np.stack([-(u - k[0, 2]) / k[0, 0], -(v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)
    d = local @ cam.to_world[:3, :3].T
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def plane_points(scene: Scene, width: int, height: int) -> np.ndarray:
    """Where each pixel centre's ray meets the y = 0 plane (NaN where it does not)."""
    o = scene.camera.to_world[:3, 3]
    d = pixel_rays(scene, width, height)
    t = -o[1] / np.where(np.abs(d[..., 1]) > 1e-9, d[..., 1], np.nan)
    p = o + t[..., None] * d
    p[t <= 0] = np.nan
    return p


def uv_sphere(radius: float = 0.5, n_lat: int = 24, n_lon: int = 48, material: dict | None = None):
    """A smooth sphere Mesh resting on y = 0 (vertex normals), for tests that need every normal."""
    from dipir.scene.mesh import Mesh

    th = np.linspace(0, np.pi, n_lat + 1)
    ph = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    n = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    faces = []
    for i in range(n_lat):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            faces += [(a, b, c), (b, d, c)]  # counter-clockwise seen from outside
    f = np.array(faces, np.int32)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    v = (n * radius + np.array([0, radius, 0])).astype(np.float32)
    return Mesh(vertices=v, faces=f, normals=n.astype(np.float32),
                material=material or {"base_color": [0.7, 0.7, 0.7], "roughness": 0.6, "metallic": 0.0}, name="sphere")
