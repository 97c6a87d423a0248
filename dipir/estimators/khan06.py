"""`khan06`: the background itself wrapped onto the sphere as the env map, after Khan, Reinhard,
Fleming, Bülthoff 2006, "Image-based material editing" (SIGGRAPH), section on the environment.

As in the paper, the (linearized) image is stretched over the hemisphere in front of the camera and
the hemisphere behind it is that image's mirror reflection, so the map is continuous everywhere.
Concretely, a world direction is expressed in the camera frame (x left, y up, z forward), folded to
the front (z -> |z|), and mapped by longitude atan2(x, z) in [-90°, 90°] to the image's columns
(left to right) and by latitude asin(y) in [-90°, 90°] to its rows (bottom to top).
`intensity` scales the result; the LDR image's dynamic range is not expanded.
"""

from __future__ import annotations

import time

import numpy as np

from dipir.estimators.base import EstimatorTraits, Lighting, Requirements
from dipir.estimators.common import (
    area_resize,
    bilinear,
    camera_frame,
    check_number,
    check_options,
    finalize,
    load_background_linear,
    map_size,
)
from dipir.rendering.hdr import equirect_directions
from dipir.scene.contract import Scene


def wrap_image_on_sphere(img: np.ndarray, left: np.ndarray, up: np.ndarray, forward: np.ndarray,
                         height: int, width: int) -> np.ndarray:
    """Khan et al.'s hemisphere + mirrored hemisphere wrap of `img` (h, w, 3) into an equirect map."""
    d = equirect_directions(height, width).astype(np.float64)
    x, y, z = d @ left, d @ up, np.abs(d @ forward)
    lon = np.arctan2(x, z)  # +x is the image's left
    lat = np.arcsin(np.clip(y, -1, 1))
    img = area_resize(img, height, width // 2)  # the front hemisphere spans W/2 x H texels
    h, w = img.shape[:2]
    u = w * (0.5 - lon / np.pi)
    v = h * (0.5 - lat / np.pi)
    return bilinear(img, u, v)


class Khan06Estimator:
    name = "khan06"
    requires = Requirements()
    # 1: what it has made since before versions existed. Bump with a change to its results and
    # say what changed here (base.EstimatorTraits.output_version).
    traits = EstimatorTraits(output_version=1)

    def __init__(self, height: int, intensity: float = 1.0):
        self.height, self.width, self.intensity = height, 2 * height, float(intensity)

    @classmethod
    def from_options(cls, options: dict) -> "Khan06Estimator":
        check_options(cls.name, options, {"height", "intensity"})
        # > 0: a zero, negative (zeroed by finalize) or NaN intensity would make the map black or broken
        intensity = check_number(options.get("intensity", 1.0), "options.intensity", 0, lo_open=True)
        return cls(map_size(options).height, float(intensity))

    def estimate(self, scene: Scene) -> Lighting:
        t0 = time.perf_counter()
        img = load_background_linear(scene)
        env = wrap_image_on_sphere(img, *camera_frame(scene.camera), self.height, self.width) * self.intensity
        return Lighting(envmap=finalize(env), seconds=time.perf_counter() - t0)
