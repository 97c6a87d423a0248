"""Shared pieces of the baseline estimators: the linearized background, the world direction of
each background pixel, the camera frame, and map-size options.

Camera convention (dipir/scene/contract.py): the camera looks along its local +Z, local +Y is up and local
+X points to the image's LEFT; pixel (u, v) counts right and down from the top-left corner.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from dipir.errors import DipirError
from dipir.io import read_rgb
from dipir.rendering.srgb import srgb_to_linear
from dipir.scene.contract import Camera, Scene

DEFAULT_HEIGHT = 128  # declared map size of every baseline unless its options say otherwise


def load_background_srgb(scene: Scene) -> np.ndarray:
    """The background as float32 (h, w, 3) sRGB values in [0, 1]."""
    return read_rgb(scene.background, field="background")


def load_background_linear(scene: Scene) -> np.ndarray:
    """The background decoded from sRGB to linear RGB (h, w, 3) float32."""
    return srgb_to_linear(load_background_srgb(scene))


def camera_for_image(camera: Camera, width: int, height: int) -> Camera:
    return camera if (camera.width, camera.height) == (width, height) else camera.resized(width, height)


def pixel_directions(camera: Camera, width: int, height: int) -> np.ndarray:
    """Unit world direction (height, width, 3) through each pixel centre of an image of this size."""
    cam = camera_for_image(camera, width, height)
    K = cam.K()
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64) + 0.5
    uu, vv = np.meshgrid(u, v)
    # local +X is the image's left and local +Y is up, so both pixel axes flip sign.
    local = np.stack([-(uu - K[0, 2]) / K[0, 0], -(vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], axis=-1)
    d = local @ cam.to_world[:3, :3].T
    return (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)


def camera_frame(camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit (left, up, forward) world vectors of the camera."""
    r = camera.to_world[:3, :3]
    cols = [r[:, i] / np.linalg.norm(r[:, i]) for i in range(3)]
    return cols[0], cols[1], cols[2]


def project_to_pixels(camera: Camera, dirs: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates (u, v) of world directions, and a mask of those in front of the
    camera and inside the image."""
    cam = camera_for_image(camera, width, height)
    K = cam.K()
    local = dirs @ cam.to_world[:3, :3]  # rows of R^T applied: world -> camera local (R orthonormal)
    z = local[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 2] - K[0, 0] * local[..., 0] / z
        v = K[1, 2] - K[1, 1] * local[..., 1] / z
    inside = (z > 1e-6) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return np.stack([u, v], axis=-1), inside


def bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup at continuous pixel coordinates (u right, v down; pixel centres at +0.5),
    clamped at the borders."""
    h, w = img.shape[:2]
    x = np.clip(u - 0.5, 0, w - 1)
    y = np.clip(v - 0.5, 0, h - 1)
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2 if w > 1 else 0)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def area_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box-filter downsampling (no-op when not smaller), so a wrap does not alias a large image."""
    h, w = img.shape[:2]
    if h <= height and w <= width:
        return img

    def weights(n_src, n_dst):
        e_s, e_d = np.linspace(0, 1, n_src + 1), np.linspace(0, 1, n_dst + 1)
        m = np.clip(np.minimum(e_d[1:, None], e_s[None, 1:]) - np.maximum(e_d[:-1, None], e_s[None, :-1]), 0, None)
        return m / m.sum(axis=1, keepdims=True)

    ry, rx = weights(h, min(h, height)), weights(w, min(w, width))
    # one GEMM per axis (numpy's einsum is far slower here)
    c = img.shape[2]
    rows = (ry.astype(np.float32) @ img.astype(np.float32).reshape(h, -1)).reshape(-1, w, c)
    cols = rx.astype(np.float32) @ rows.transpose(1, 0, 2).reshape(w, -1)
    return cols.reshape(rx.shape[0], ry.shape[0], c).transpose(1, 0, 2).astype(np.float32)


@dataclass(frozen=True)
class MapSize:
    height: int = DEFAULT_HEIGHT

    @property
    def width(self) -> int:
        return 2 * self.height


def map_size(options: dict, default: int = DEFAULT_HEIGHT) -> MapSize:
    """`height` option (the width is always 2 x height), validated."""
    h = options.get("height", default)
    if isinstance(h, bool) or not isinstance(h, int) or h < 4:
        raise DipirError(f"expected an integer >= 4, got {h!r}", field="options.height")
    return MapSize(int(h))


def check_options(name: str, options: dict, allowed: set[str]) -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        raise DipirError(f"unknown option for estimator {name!r} (allowed: {', '.join(sorted(allowed)) or 'none'})",
                         field=f"options.{extra[0]}")


def check_number(value, field: str, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, integer: bool = False):
    """`value` as a number when it is a finite one (an integer when `integer`) in [lo, hi] (lo < value
    when `lo_open`); otherwise a DipirError naming `field` (options.X), so a bad option stops here with
    its name instead of crashing deep in an estimate or silently blacking out the map. A numeric string
    counts (YAML 1.1, hence suites and --option, reads 1e-3 as a string), as does a whole float for an
    integer (64.0)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass  # refused below, as it is written
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        what = "an integer" if integer else "a finite number"
        if lo is not None and hi is not None:
            what += f" in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
        elif lo is not None:
            what += f" {'>' if lo_open else '>='} {lo:g}"
        elif hi is not None:
            what += f" <= {hi:g}"
        raise DipirError(f"expected {what}, got {value!r}", field=field)
    return value


def finalize(envmap: np.ndarray) -> np.ndarray:
    """Contiguous float32 (H, W, 3) with finite negative values (fit ringing, e.g. sh2's) set to 0.

    NaN and ±inf are kept as they are: they mean a broken estimate, and
    `dipir.evaluation.insertion.check_result` turns them into an error naming the method and the map,
    where zeroing them here scored the estimate as black light."""
    env = np.asarray(envmap, dtype=np.float32)
    env = np.where(np.isfinite(env) & (env < 0), np.float32(0), env)
    return np.ascontiguousarray(env, dtype=np.float32)
