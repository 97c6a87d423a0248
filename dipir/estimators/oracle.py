"""`oracle`: the scene's ground-truth env map (an upper bound for every other method)."""

from __future__ import annotations

import time

from dipir.errors import DipirError
from dipir.estimators.base import EstimatorTraits, Lighting, Requirements
from dipir.estimators.common import check_options, finalize, map_size
from dipir.rendering.hdr import read_equirect, resample_equirect
from dipir.scene.contract import Scene


class OracleEstimator:
    """Reads `scene.envmap` (already in the scene's world, Mitsuba convention) and resamples it to
    the declared size with the area-preserving resampler, so the total light is kept."""

    name = "oracle"
    requires = Requirements(ground_truth=True)
    # 1: what it has made since before versions existed. Bump with a change to its results and
    # say what changed here (base.EstimatorTraits.output_version).
    traits = EstimatorTraits(output_version=1)

    def __init__(self, height: int | None = None):
        self.height = height  # None: the ground truth's own resolution

    @classmethod
    def from_options(cls, options: dict) -> "OracleEstimator":
        check_options(cls.name, options, {"height"})
        return cls(map_size(options).height if "height" in options else None)

    def estimate(self, scene: Scene) -> Lighting:
        t0 = time.perf_counter()
        if scene.envmap is None:
            raise DipirError("the oracle needs a ground-truth env map; the scene has none", scene.source, "envmap")
        env, negative = read_equirect(scene.envmap)
        if self.height is not None:
            env = resample_equirect(env, self.height, 2 * self.height)
        return Lighting(envmap=finalize(env), seconds=time.perf_counter() - t0,
                        extras={"source": str(scene.envmap), "negative_texels": negative})
