"""Test-only estimators for the pipeline tests: one that counts its runs, one that kills its worker.

Suites name the estimator as `helpers.pipeline:CountingEstimator`; Ray workers import it from the
driver's sys.path (pytest puts tests/ on it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dipir.estimators.base import Lighting, Requirements

TINY_RENDER = {"width": 32, "height": 32, "spp": 4, "max_depth": 2, "envmap_height": 16, "envmap_width": 32}


class CountingEstimator:
    """A constant env map at the background's mean colour (times `gain`); every estimate
    appends one line `<scene id> <pid>` to `counter`, so tests count executions, not time."""

    requires = Requirements()

    def __init__(self, counter: str, gain: float = 1.0, preset: str | None = None, needs_gt: bool = False,
                 delay: float = 0.0, **_):
        self.delay = delay  # seconds of sleep per estimate (a task that takes a while)
        self.name = "counting"
        self.counter = counter
        self.gain = {"dim": 0.5, "bright": 2.0}.get(preset, gain)
        if needs_gt:
            self.requires = Requirements(ground_truth=True)

    def estimate(self, scene) -> Lighting:
        import time

        from PIL import Image

        time.sleep(self.delay)
        with open(self.counter, "a") as f:
            f.write(f"{scene.id} {os.getpid()}\n")
        bg = np.asarray(Image.open(scene.background).convert("RGB"), dtype=np.float32) / 255.0
        color = bg.reshape(-1, 3).mean(axis=0) ** 2.2 * self.gain
        env = np.broadcast_to(color, (TINY_RENDER["envmap_height"], TINY_RENDER["envmap_width"], 3))
        return Lighting(envmap=np.ascontiguousarray(env, dtype=np.float32))


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


class CrashingEstimator:
    """Kills its worker process on every estimate (a scene that always takes the worker down)."""

    requires = Requirements()
    name = "crashing"

    def __init__(self, **_):
        pass

    def estimate(self, scene) -> Lighting:
        os._exit(1)
