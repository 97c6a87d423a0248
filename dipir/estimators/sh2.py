"""`sh2`: an order-2 (9-coefficient, per channel) real spherical-harmonics fit of the linearized
background, evaluated over the whole sphere.

Each background pixel is a radiance sample along its world direction (through the scene camera).
The coefficients minimize the solid-angle-weighted squared error over those samples plus a ridge
penalty `ridge` on bands 1 and 2 (the DC term is free): a 60° view constrains only a cone of
directions, and the penalty keeps the extrapolation behind the camera smooth instead of wild.
Negative values of the fitted function are clamped to 0. Basis constants: Ramamoorthi & Hanrahan
2001, "An efficient representation for irradiance environment maps" (SIGGRAPH), eq. 3.
"""

from __future__ import annotations

import time

import numpy as np

from dipir.estimators.base import EstimatorTraits, Lighting, Requirements
from dipir.estimators.common import (
    area_resize,
    camera_for_image,
    check_number,
    check_options,
    finalize,
    load_background_linear,
    map_size,
    pixel_directions,
)
from dipir.rendering.hdr import equirect_directions
from dipir.scene.contract import Scene


def sh9_basis(d: np.ndarray) -> np.ndarray:
    """Real SH basis up to l = 2 at unit directions (..., 3) -> (..., 9)."""
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    return np.stack([
        0.282095 * np.ones_like(x),
        0.488603 * y, 0.488603 * z, 0.488603 * x,
        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z,
        0.546274 * (x * x - y * y),
    ], axis=-1)


def fit_sh9(dirs: np.ndarray, values: np.ndarray, weights: np.ndarray, ridge: float) -> np.ndarray:
    """Weighted ridge least squares: (9, C) coefficients."""
    B = sh9_basis(dirs.reshape(-1, 3).astype(np.float64))
    w = weights.reshape(-1).astype(np.float64)
    w = w / w.sum()
    A = B.T @ (B * w[:, None])
    A[np.arange(1, 9), np.arange(1, 9)] += ridge
    rhs = B.T @ (values.reshape(len(w), -1).astype(np.float64) * w[:, None])
    return np.linalg.solve(A, rhs)


def pixel_solid_angle_weights(camera, width: int, height: int) -> np.ndarray:
    """Solid angle of each pixel up to a constant: cos³ of its angle off the optical axis."""
    cam = camera_for_image(camera, width, height)
    fwd = cam.to_world[:3, 2] / np.linalg.norm(cam.to_world[:3, 2])
    return np.clip(pixel_directions(cam, width, height) @ fwd, 0, 1) ** 3


class SH2Estimator:
    name = "sh2"
    requires = Requirements()
    # 1: what it has made since before versions existed. Bump with a change to its results and
    # say what changed here (base.EstimatorTraits.output_version).
    traits = EstimatorTraits(output_version=1)

    def __init__(self, height: int, ridge: float = 0.05, fit_pixels: int = 64):
        self.height, self.width = height, 2 * height
        self.ridge, self.fit_pixels = float(ridge), int(fit_pixels)

    @classmethod
    def from_options(cls, options: dict) -> "SH2Estimator":
        check_options(cls.name, options, {"height", "ridge", "fit_pixels"})
        ridge = check_number(options.get("ridge", 0.05), "options.ridge", 0)  # 0: plain least squares
        fit_pixels = check_number(options.get("fit_pixels", 64), "options.fit_pixels", 1, integer=True)
        return cls(map_size(options).height, float(ridge), int(fit_pixels))

    def estimate(self, scene: Scene) -> Lighting:
        t0 = time.perf_counter()
        img = load_background_linear(scene)
        h, w = img.shape[:2]
        scale = self.fit_pixels / max(h, w)  # a low-order fit needs few samples
        small = area_resize(img, max(2, round(h * scale)), max(2, round(w * scale)))
        sh, sw = small.shape[:2]
        dirs = pixel_directions(scene.camera, sw, sh)
        coeffs = fit_sh9(dirs, small, pixel_solid_angle_weights(scene.camera, sw, sh), self.ridge)
        env = sh9_basis(equirect_directions(self.height, self.width).astype(np.float64)) @ coeffs
        return Lighting(envmap=finalize(env), seconds=time.perf_counter() - t0,
                        extras={"sh_coefficients": coeffs.T.tolist()})
