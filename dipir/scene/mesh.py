"""A triangle mesh in an object's local frame (+Y up, base at y = 0), with its material."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_MATERIAL = {"base_color": [0.6, 0.6, 0.6], "roughness": 0.5, "metallic": 0.0}


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float32, local frame
    faces: np.ndarray  # (F, 3) int32
    normals: np.ndarray | None = None  # (V, 3) per-vertex, optional
    material: dict = field(default_factory=lambda: dict(DEFAULT_MATERIAL))
    name: str = "object"

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)
