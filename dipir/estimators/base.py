"""The LightingEstimator interface every method shares (DiPIR, its presets, baselines, oracle, file).

An estimator turns a Scene into Lighting: an HDR equirect map in the scene's world, in Mitsuba's
envmap convention (docs/FORMATS.md), so every method is rendered by the same renderer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dipir.scene.contract import Scene


@dataclass
class Lighting:
    envmap: np.ndarray  # (H, W, 3) float32, linear HDR, no wrap column, row 0 = +Y (top)
    sg: dict | None = None  # {"colors": (N,3), "axes": (N,3), "sharpness": (N,)} as lists
    seconds: float = 0.0  # wall time of the estimate itself
    extras: dict = field(default_factory=dict)  # method-specific diagnostics (plain data)


@dataclass(frozen=True)
class Requirements:
    """What an estimator needs; a batch run skips inapplicable (scene, method) pairs with a reason."""

    ground_truth: bool = False  # the scene must carry a ground-truth env map
    lidar: bool = False  # the scene must carry LiDAR points
    gpu: bool = False  # a CUDA device
    model: bool = False  # a diffusion model (path, hub id, or "tiny")

    def unmet(self, scene: Scene, has_gpu: bool, has_model: bool) -> str | None:
        """The reason this scene cannot be estimated, or None when it can."""
        if self.ground_truth and scene.envmap is None:
            return "needs a ground-truth env map; the scene has none"
        if self.lidar and scene.points is None:
            return "needs LiDAR points; the scene has none"
        if self.gpu and not has_gpu:
            return "needs a CUDA GPU"
        if self.model and not has_model:
            return "needs a diffusion model"
        return None


class LightingEstimator(Protocol):
    name: str
    requires: Requirements

    def estimate(self, scene: Scene) -> Lighting: ...
