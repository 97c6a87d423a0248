"""Object assets: meshes in a normalized local frame (+Y up, base at y = 0) and their placement.

`load_object_mesh(spec)` returns a `Mesh`; `object_to_world(spec, plane)` the 4x4 that puts the
local frame on the proxy plane: scale, yaw about local +Y, then local +Y aligned with the plane
normal, then translation to `spec.position`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dipir.errors import DipirError
from dipir.scene import ObjectSpec, Plane

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


def normalize_local(mesh: Mesh) -> Mesh:
    """Centre the mesh on x/z, put its base at y = 0."""
    lo, hi = mesh.bounds()
    offset = np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2], dtype=np.float32)
    mesh.vertices = (mesh.vertices - offset).astype(np.float32)
    return mesh


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a to unit vector b (Rodrigues)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-9:  # opposite: rotate π about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 0, 1.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def object_to_world(spec: ObjectSpec, plane: Plane) -> np.ndarray:
    """4x4 local -> world for an object standing on the plane at spec.position."""
    yaw = np.radians(spec.yaw_deg)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    m = np.eye(4)
    m[:3, :3] = rotation_between(np.array([0.0, 1, 0]), np.asarray(plane.normal, float)) @ ry * spec.scale
    m[:3, 3] = spec.position
    return m


def load_mesh_file(path: str | Path) -> Mesh:
    """Load an OBJ / PLY / glTF / GLB file with trimesh (scenes are flattened into one mesh)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise DipirError("mesh file not found", path, "object.mesh")
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as err:  # trimesh raises many types for malformed files
        raise DipirError(f"unreadable mesh ({err.__class__.__name__}: {str(err)[:120]})", path, "object.mesh") from None
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int32)
    verts = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float32)
    if faces.size == 0 or verts.size == 0:
        raise DipirError("mesh has no faces", path, "object.mesh")
    if not np.all(np.isfinite(verts)):
        raise DipirError("mesh has non-finite vertices", path, "object.mesh")
    material = dict(DEFAULT_MATERIAL)
    mat = getattr(getattr(loaded, "visual", None), "material", None)
    color = getattr(mat, "baseColorFactor", None)
    if color is None:
        color = getattr(mat, "diffuse", None)
    if color is not None:
        c = np.asarray(color, dtype=np.float64)[:3]
        material["base_color"] = (c / 255.0 if c.max() > 1 else c).tolist()
    for attr, key in (("roughnessFactor", "roughness"), ("metallicFactor", "metallic")):
        if getattr(mat, attr, None) is not None:
            material[key] = float(getattr(mat, attr))
    return normalize_local(Mesh(vertices=verts, faces=faces, material=material, name=path.stem))


def load_object_mesh(spec: ObjectSpec) -> Mesh:
    """The mesh an ObjectSpec names, with the spec's material overriding the file's."""
    if spec.mesh.startswith("builtin:"):
        from dipir.procedural_assets import BUILTIN_ASSETS

        name = spec.mesh.split(":", 1)[1]
        if name not in BUILTIN_ASSETS:
            raise DipirError(f"unknown builtin asset {name!r} (have: {', '.join(sorted(BUILTIN_ASSETS))})",
                             field="object.mesh")
        mesh = BUILTIN_ASSETS[name]()
    else:
        mesh = load_mesh_file(spec.mesh)
    mesh.material = {**mesh.material, **spec.material}
    return mesh
