"""Procedurally generated assets built by code, so demos and tests need no downloads.

Each builder returns a `Mesh` in the local frame (+Y up, base at y = 0, metres).
"""

from __future__ import annotations

import numpy as np

from dipir.assets import Mesh


def box(size=(1.0, 1.0, 1.0), material: dict | None = None, name: str = "box") -> Mesh:
    """An axis-aligned box standing on y = 0, outward-facing triangles."""
    sx, sy, sz = (float(s) / 2 for s in size)
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (0.0, 2 * sy) for z in (-sz, sz)], dtype=np.float32)
    # Vertex index = 4*ix + 2*iy + iz; two triangles per face, counter-clockwise seen from outside.
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], dtype=np.int32)
    return Mesh(vertices=v, faces=f, material=dict(material or {"base_color": [0.7, 0.7, 0.7], "roughness": 0.5, "metallic": 0.0}), name=name)


BUILTIN_ASSETS = {
    "box": box,
}
