"""`file`: env maps precomputed by any external estimator (DiffusionLight, StyleLight, EverLight, ...).

Layout: one equirectangular HDR file per scene, named by the scene id, in one folder:

    <folder>/<scene_id>.exr      (or <scene_id>.hdr; .exr wins when both exist)

Orientation (`convention` option):
- `mitsuba` (default): Mitsuba's envmap convention in the scene's world (+Y up, image centre +Z,
  u = 0.25 is +X; rows from pole to pole, θ = π i / (H - 1)), i.e. what `dipir` itself writes.
- `blender`: Blender's equirect convention in the scene's world expressed in Blender axes (+Z up,
  image centre +X, u = 0.25 is +Y; Blender (x, y, z) is Mitsuba (y, z, x)); rows at texel centres,
  θ = π (i + 0.5) / H. Each Mitsuba texel direction is mapped to Blender axes and looked up
  bilinearly (wrapping in u), so a map exported from Blender lands in the same place.

Frame (`frame` option):
- `world` (default): the map is already in the scene's world (what `dipir` and the oracle write).
- `camera`: the map is camera-relative, as single-image estimators write it: the image centre
  looks along the camera's optical axis, the top row is the camera's up and columns right of the
  centre are the camera's right (a panorama read like a photo from inside). We assume this from
  their code: DiffusionLight's `ball2envmap.py` unwraps the chrome ball as seen by the camera
  (viewing vector fixed, image centre = the direction behind the ball, ball top = image up), and
  StyleLight pastes the input crop at the panorama's centre with azimuth, elevation and roll 0
  (skylibs' `Fov2MaskedPano`). Pitch and roll are the camera's: no gravity alignment is assumed.
  In `mitsuba` convention that is a map in Mitsuba's camera frame (+Z forward, +Y up, +X left); in
  `blender` convention, Blender axes of that frame (+X forward, +Z up). The map is rotated into
  the world with the scene camera's rotation: each world texel direction d looks up the camera map
  at R_cam^T d (bilinear, wrapping in u).

Exposure (`exposure` option): external estimators disagree on absolute scale. `none` (default)
keeps the file's values; `background` rescales the map so its mean radiance over the directions the
camera sees equals the mean of the linearized background (a white diffuse card then looks as bright
as the photo); a number in [-60, 60] multiplies the map by 2**number (stops). The applied factor is
recorded in `Lighting.extras["exposure_scale"]`.

Errors name the file: a missing scene id, a width that is not twice the height, NaN or infinite
values. Negative values (ringing of some decoders) are clamped to 0 and counted in extras.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dipir.errors import DipirError
from dipir.estimators.base import EstimatorTraits, Lighting, Requirements
from dipir.estimators.common import (
    check_number,
    check_options,
    finalize,
    load_background_linear,
    map_size,
    pixel_directions,
)
from dipir.rendering.hdr import equirect_directions, read_equirect, resample_equirect
from dipir.scene.contract import Camera, Scene

CONVENTIONS = ("mitsuba", "blender")
FRAMES = ("world", "camera")
EXTENSIONS = (".exr", ".hdr")
MAX_STOPS = 60  # the `exposure` option's range, in stops either way


def blender_to_mitsuba(img: np.ndarray) -> np.ndarray:
    """Re-sample a Blender-convention equirect map onto Mitsuba's texel grid (same size)."""
    h, w = img.shape[:2]
    d = equirect_directions(h, w).astype(np.float64)  # Mitsuba world
    bx, by, bz = d[..., 2], d[..., 0], d[..., 1]  # Mitsuba (x, y, z) = Blender (y, z, x)
    # Blender: u = -atan2(y, x) / 2π + 0.5, v (from the bottom) = atan2(z, hypot(x, y)) / π + 0.5.
    u = np.mod(-np.arctan2(by, bx) / (2 * np.pi) + 0.5, 1.0)
    v_top = 0.5 - np.arctan2(bz, np.hypot(bx, by)) / np.pi
    x = u * w - 0.5  # column centres at (j + 0.5) / W
    y = np.clip(v_top * h - 0.5, 0, h - 1)  # row centres at (i + 0.5) / H from the top
    x0 = np.floor(x).astype(int)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0w, x1w = np.mod(x0, w), np.mod(x0 + 1, w)
    top = img[y0, x0w] * (1 - fx) + img[y0, x1w] * fx
    bot = img[y0 + 1, x0w] * (1 - fx) + img[y0 + 1, x1w] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def mitsuba_to_blender(img: np.ndarray) -> np.ndarray:
    """The inverse re-sampling (used by tests and by users exporting maps to Blender)."""
    h, w = img.shape[:2]
    i, j = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    u, v_top = j / w, i / h
    az = (0.5 - u) * 2 * np.pi  # Blender atan2(y, x)
    el = (0.5 - v_top) * np.pi
    bx, by, bz = np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)
    d = np.stack([by, bz, bx], axis=-1)  # Mitsuba world
    from dipir.rendering.hdr import direction_to_pixel

    rc = direction_to_pixel(d, h, w)
    r, c = np.clip(rc[..., 0], 0, h - 1), rc[..., 1]
    r0 = np.clip(np.floor(r).astype(int), 0, h - 2)
    c0 = np.floor(c).astype(int)
    fr, fc = (r - r0)[..., None], (c - c0)[..., None]
    c0w, c1w = np.mod(c0, w), np.mod(c0 + 1, w)
    top = img[r0, c0w] * (1 - fc) + img[r0, c1w] * fc
    bot = img[r0 + 1, c0w] * (1 - fc) + img[r0 + 1, c1w] * fc
    return (top * (1 - fr) + bot * fr).astype(np.float32)


def camera_to_world(img: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """A camera-frame map (Mitsuba convention in the camera's local frame: +Z forward, +Y up,
    +X left) re-sampled onto the world's texel grid (same size) by the camera's 3x3 rotation."""
    from dipir.data.polyhaven import sample_equirect

    u, _, vt = np.linalg.svd(np.asarray(cam_to_world, dtype=np.float64))  # drop any scale
    rot = u @ vt
    h, w = img.shape[:2]
    d = equirect_directions(h, w).astype(np.float64)
    return sample_equirect(img, d @ rot)  # row vectors: d @ R = (R^T d)^T, the camera-local direction


def find_map(folder: Path, scene_id: str) -> Path:
    for ext in EXTENSIONS:
        p = folder / f"{scene_id}{ext}"
        if p.is_file():
            return p
    raise DipirError(f"no env map for scene {scene_id!r} (expected {scene_id}.exr or {scene_id}.hdr)",
                     folder / f"{scene_id}.exr", "file.folder")


class FileEstimator:
    name = "file"
    requires = Requirements()
    # 1: what it has made since before versions existed. Bump with a change to its results and
    # say what changed here (base.EstimatorTraits.output_version).
    traits = EstimatorTraits(output_version=1, input_paths=("folder",))

    def __init__(self, folder: str | Path, height: int | None = None, convention: str = "mitsuba",
                 exposure: str | float = "none", frame: str = "world"):
        self.folder = Path(folder)
        if convention not in CONVENTIONS:
            raise DipirError(f"unknown convention {convention!r} (use {' or '.join(CONVENTIONS)})",
                             field="options.convention")
        if frame not in FRAMES:
            raise DipirError(f"unknown frame {frame!r} (use {' or '.join(FRAMES)})", field="options.frame")
        self.frame = frame
        if exposure not in ("none", "background"):
            try:  # ±60 stops (x1e18) is far beyond any real exposure gap; 2.0 ** 2000 overflowed in estimate
                exposure = check_number(exposure, "options.exposure", -MAX_STOPS, MAX_STOPS)
            except DipirError:
                if isinstance(exposure, (int, float)) and not isinstance(exposure, bool):
                    raise  # a number, out of range
                raise DipirError(f"expected 'none', 'background' or a number of stops, got {exposure!r}",
                                 field="options.exposure") from None
        self.height, self.convention, self.exposure = height, convention, exposure

    @classmethod
    def from_options(cls, options: dict) -> "FileEstimator":
        check_options(cls.name, options, {"folder", "height", "convention", "exposure", "frame"})
        if not options.get("folder"):
            raise DipirError("the file estimator needs a folder of env maps", field="options.folder")
        return cls(options["folder"], map_size(options).height if "height" in options else None,
                   options.get("convention", "mitsuba"), options.get("exposure", "none"),
                   options.get("frame", "world"))

    def load(self, scene_id: str, camera: Camera | None = None) -> tuple[np.ndarray, Path, dict]:
        """The scene's map in Mitsuba's convention and the scene's world (`camera` rotates a
        camera-frame map; required when frame is `camera`)."""
        path = find_map(self.folder, scene_id)
        env, negative = read_equirect(path)  # unreadable, NaN / inf, not 2:1: a DipirError naming the file
        extras = {"source": str(path), "negative_texels": negative}
        if self.convention == "blender":
            env = blender_to_mitsuba(env)
        extras["frame"] = self.frame
        if self.frame == "camera":
            if camera is None:
                raise DipirError("a camera-frame map needs the scene's camera to be rotated into the world", path,
                                 "options.frame")
            env = camera_to_world(env, camera.to_world[:3, :3])
        return env, path, extras

    def estimate(self, scene: Scene) -> Lighting:
        t0 = time.perf_counter()
        env, _, extras = self.load(scene.id, scene.camera)
        if self.height is not None:
            env = resample_equirect(env, self.height, 2 * self.height)
        scale = 1.0
        if self.exposure == "background":
            scale = background_exposure_scale(env, scene)
        elif isinstance(self.exposure, (int, float)):
            scale = float(2.0 ** self.exposure)
        extras["exposure_scale"] = scale
        return Lighting(envmap=finalize(env * scale), seconds=time.perf_counter() - t0, extras=extras)


def background_exposure_scale(env: np.ndarray, scene: Scene, samples: int = 48) -> float:
    """Scale making the map's mean over the camera's view equal the linear background's mean."""
    from dipir.rendering.hdr import direction_to_pixel

    bg = load_background_linear(scene)
    h, w = env.shape[:2]
    sh = max(2, round(samples * scene.camera.height / max(scene.camera.width, scene.camera.height)))
    sw = max(2, round(samples * scene.camera.width / max(scene.camera.width, scene.camera.height)))
    rc = direction_to_pixel(pixel_directions(scene.camera, sw, sh), h, w)
    r = np.clip(np.rint(rc[..., 0]).astype(int), 0, h - 1)
    c = np.mod(np.rint(rc[..., 1]).astype(int), w)
    seen = float(env[r, c].mean())
    return float(bg.mean()) / seen if seen > 0 else 1.0
