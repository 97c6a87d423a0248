"""Procedurally generated assets built by code, so demos and tests need no downloads.

Each builder returns a `Mesh` in the local frame (+Y up, base at y = 0, metres, front along +Z
for the vehicle). Triangles wind counter-clockwise seen from outside (outward normals).
"""

from __future__ import annotations

import numpy as np

from dipir.scene.mesh import Mesh

_GREY = {"base_color": [0.7, 0.7, 0.7], "roughness": 0.5, "metallic": 0.0}


def box(size=(1.0, 1.0, 1.0), material: dict | None = None, name: str = "box") -> Mesh:
    """An axis-aligned box standing on y = 0, outward-facing triangles."""
    sx, sy, sz = (float(s) / 2 for s in size)
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (0.0, 2 * sy) for z in (-sz, sz)], dtype=np.float32)
    # Vertex index = 4*ix + 2*iy + iz; two triangles per face, counter-clockwise seen from outside.
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], dtype=np.int32)
    return Mesh(vertices=v, faces=f, material=dict(material or _GREY), name=name)


def merge(parts: list[Mesh], material: dict, name: str) -> Mesh:
    """Concatenate meshes into one (one material: the renderer takes one BSDF per object)."""
    verts, faces, n = [], [], 0
    for p in parts:
        verts.append(p.vertices)
        faces.append(p.faces + n)
        n += len(p.vertices)
    return Mesh(vertices=np.concatenate(verts).astype(np.float32), faces=np.concatenate(faces).astype(np.int32),
                material=dict(material), name=name)


def _translated(m: Mesh, offset) -> Mesh:
    m.vertices = (m.vertices + np.asarray(offset, dtype=np.float32)).astype(np.float32)
    return m


def lathe(profile: list[tuple[float, float]], segments: int = 32, close_bottom: bool = True,
          close_top: bool = False, material: dict | None = None, name: str = "lathe") -> Mesh:
    """Surface of revolution about +Y of a (radius, height) polyline listed bottom to top.

    A polyline that goes up the outside and back down the inside gives a walled, open vessel.
    """
    prof = np.asarray(profile, dtype=np.float64)
    p, s = len(prof), segments
    ang = 2 * np.pi * np.arange(s) / s
    # Ring k, segment a -> index k*s + a. Angle increases from +Z towards +X (counter-clockwise from above).
    v = np.stack([prof[:, None, 0] * np.sin(ang)[None], np.repeat(prof[:, 1:2], s, axis=1),
                  prof[:, None, 0] * np.cos(ang)[None]], axis=-1).reshape(-1, 3)
    faces = []
    for k in range(p - 1):
        for a in range(s):
            b = (a + 1) % s
            i0, i1, i2, i3 = k * s + a, k * s + b, (k + 1) * s + b, (k + 1) * s + a
            faces += [(i0, i1, i2), (i0, i2, i3)]
    verts = [v]
    if close_bottom:  # fan at the first ring, facing -Y
        c = len(v)
        verts.append([[0.0, prof[0, 1], 0.0]])
        faces += [(c, (a + 1) % s, a) for a in range(s)]
    if close_top:  # fan at the last ring, facing +Y
        c = len(v) + (1 if close_bottom else 0)
        verts.append([[0.0, prof[-1, 1], 0.0]])
        base = (p - 1) * s
        faces += [(c, base + a, base + (a + 1) % s) for a in range(s)]
    vv = np.concatenate([np.asarray(x, dtype=np.float64) for x in verts])
    ff = np.asarray(faces, dtype=np.int32)
    # Rings of radius 0 (poles) give zero-area triangles: drop them.
    area = np.linalg.norm(np.cross(vv[ff[:, 1]] - vv[ff[:, 0]], vv[ff[:, 2]] - vv[ff[:, 0]]), axis=1)
    mesh = Mesh(vertices=vv.astype(np.float32), faces=ff[area > 1e-12], material=dict(material or _GREY), name=name)
    _fix_winding(mesh)
    return mesh


def _fix_winding(mesh: Mesh) -> None:
    # Make the lathe's side triangles face away from the axis on the outside. The signed volume of a
    # closed, outward-wound mesh is positive; flip all triangles if it comes out negative.
    v, f = mesh.vertices.astype(np.float64), mesh.faces
    vol = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum()
    if vol < 0:
        mesh.faces = mesh.faces[:, ::-1].copy()


def cylinder_x(radius: float, width: float, segments: int = 24) -> Mesh:
    """A closed cylinder with its axis along X, centred at the origin (a wheel)."""
    m = lathe([(0.0, -width / 2), (radius, -width / 2), (radius, width / 2), (0.0, width / 2)],
              segments=segments, close_bottom=False)
    # Lathe axis is +Y; rotate +Y -> +X: (x, y, z) -> (y, -x, z) keeps handedness.
    v = m.vertices.copy()
    m.vertices = np.stack([v[:, 1], -v[:, 0], v[:, 2]], axis=1).astype(np.float32)
    return m


def car(material: dict | None = None, name: str = "car") -> Mesh:
    """A car-sized vehicle (4.5 m long along +Z, 1.8 m wide, 1.45 m tall): body, cabin, four wheels."""
    mat = material or {"base_color": [0.55, 0.06, 0.05], "roughness": 0.25, "metallic": 0.0}
    wheel_r, wheel_w = 0.33, 0.24
    parts = [
        _translated(box((1.8, 0.65, 4.5)), (0, 0.28, 0)),  # lower body
        _translated(box((1.6, 0.5, 2.3)), (0, 0.93, -0.25)),  # cabin
    ]
    for x in (-0.78, 0.78):
        for z in (-1.45, 1.45):
            parts.append(_translated(cylinder_x(wheel_r, wheel_w), (x, wheel_r, z)))
    return merge(parts, mat, name)


def vase(material: dict | None = None, name: str = "vase") -> Mesh:
    """A 0.4 m tall closed vase with a bulging body and a narrow neck."""
    prof = [(0.07, 0.0), (0.12, 0.06), (0.14, 0.15), (0.12, 0.25), (0.06, 0.33), (0.05, 0.37), (0.07, 0.40),
            (0.0, 0.40)]
    return lathe(prof, segments=40, material=material or {"base_color": [0.2, 0.35, 0.6], "roughness": 0.15,
                                                          "metallic": 0.0}, name=name)


def bucket(material: dict | None = None, name: str = "bucket") -> Mesh:
    """A 0.3 m tall open bucket (tapered, with a wall thickness), metallic grey."""
    prof = [(0.12, 0.0), (0.15, 0.30), (0.14, 0.30), (0.11, 0.01), (0.0, 0.01)]
    return lathe(prof, segments=40, material=material or {"base_color": [0.75, 0.75, 0.78], "roughness": 0.35,
                                                          "metallic": 1.0}, name=name)


BUILTIN_ASSETS = {
    "box": box,
    "car": car,
    "vase": vase,
    "bucket": bucket,
}
