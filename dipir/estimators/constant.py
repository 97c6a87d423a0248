"""`constant`: uniform light at the mean linearized background colour.

Under uniform radiance L a white Lambertian surface reflects exactly L, so the object comes out as
bright as the average of the image it is put into.
"""

from __future__ import annotations

import time

import numpy as np

from dipir.estimators.base import EstimatorTraits, Lighting, Requirements
from dipir.estimators.common import check_number, check_options, finalize, load_background_linear, map_size
from dipir.scene.contract import Scene


class ConstantEstimator:
    name = "constant"
    requires = Requirements()
    # 1: what it has made since before versions existed. Bump with a change to its results and
    # say what changed here (base.EstimatorTraits.output_version).
    traits = EstimatorTraits(output_version=1)

    def __init__(self, height: int, intensity: float = 1.0):
        self.height, self.width, self.intensity = height, 2 * height, float(intensity)

    @classmethod
    def from_options(cls, options: dict) -> "ConstantEstimator":
        check_options(cls.name, options, {"height", "intensity"})
        # > 0: a zero, negative (zeroed by finalize) or NaN intensity would make the map black or broken
        intensity = check_number(options.get("intensity", 1.0), "options.intensity", 0, lo_open=True)
        return cls(map_size(options).height, float(intensity))

    def estimate(self, scene: Scene) -> Lighting:
        t0 = time.perf_counter()
        mean = load_background_linear(scene).reshape(-1, 3).mean(axis=0) * self.intensity
        env = np.broadcast_to(mean.astype(np.float32), (self.height, self.width, 3))
        return Lighting(envmap=finalize(env), seconds=time.perf_counter() - t0,
                        extras={"color": mean.tolist()})
