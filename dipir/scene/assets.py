"""Object assets: meshes in a normalized local frame (+Y up, base at y = 0) and their placement.

`load_object_mesh(spec)` returns a `Mesh`; `object_to_world(spec, plane)` the 4x4 that puts the
local frame on the proxy plane: scale, yaw about local +Y, then local +Y aligned with the plane
normal, then translation to `spec.position`.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from dipir.errors import DipirError
from dipir.hashing import file_stamp, hash_json
from dipir.scene.contract import ObjectSpec, Plane, check_on_plane
from dipir.scene.mesh import DEFAULT_MATERIAL, Mesh


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


# ---------------------------------------------------------------------------------------------
# Sidecars: the files a mesh file references. Task ids hash them with the mesh, since editing one
# changes what `load_mesh_file` returns (an OBJ's .mtl Kd is its base_color, a .gltf's .bin its
# geometry). Texture images (map_Kd, glTF images[]) are left out: the renderer uses colour factors
# only, never a texture, so an edited image renders the same.

_MTLLIB = re.compile(rb"mtllib[ \t]+([^\r\n]*)")
_GLB_MAGIC, _GLB_JSON = 0x46546C67, 0x4E4F534A  # b"glTF", b"JSON" as little-endian uint32
_REFERENCED: dict[str, tuple[tuple, tuple[str, ...]]] = {}  # path -> (stat stamp, names): planning 15 k
# scene folders that share one mesh reads it once


def mesh_references(path: str | Path) -> list[tuple[str, Path]]:
    """(name, path) of each file the mesh references that changes what `load_mesh_file` returns:
    OBJ `mtllib` .mtl files, glTF / GLB external buffers. `name` is the path relative to the mesh's
    folder. A reference to no existing file is listed too (its path is then not a file), so that its
    appearance changes a key. Every file the loader might read for a name is listed (trimesh falls
    back to the base name and does not URL-decode), so an edit to any of them is seen. A file of
    another format, or one that does not read: none (loading reports problems)."""
    path = Path(path)
    folder = Path(os.path.normpath(path.absolute().parent))
    out: dict[str, Path] = {}
    for name in _referenced_names(path):
        paths = [Path(os.path.normpath(folder / c)) for c in (name, name.lstrip("/"), os.path.basename(name)) if c]
        files = [p for p in paths if p.is_file()]
        for p in files or paths[:1]:
            out.setdefault(os.path.relpath(p, folder), p)
    return list(out.items())


def mesh_sidecars(path: str | Path) -> list[Path]:
    """The existing files the mesh references that change what `load_mesh_file` returns."""
    return [p for _, p in mesh_references(path) if p.is_file()]


def mesh_sidecar_hashes(path: str | Path, hashes) -> list[list[str]]:
    """[name, content hash] of each reference `mesh_references` lists (a missing file by its name).
    `hashes`: a `FileHashCache`."""
    return [[name, hashes.file(p) if p.is_file() else hash_json({"missing": name})]
            for name, p in mesh_references(path)]


def _referenced_names(path: Path) -> tuple[str, ...]:
    """The names (as written) of the files a mesh references, remembered per file version."""
    try:
        st = path.stat()
    except OSError:
        return ()
    key, stamp = str(path.absolute()), file_stamp(st)
    hit = _REFERENCED.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    suffix = path.suffix.lower()
    try:
        if suffix == ".obj":
            names = _obj_mtllibs(path)
        elif suffix == ".gltf":
            with open(path, "rb") as f:
                names = _buffer_uris(json.loads(f.read()))
        elif suffix == ".glb":
            names = _buffer_uris(_glb_json(path))
        else:
            names = []
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        names = []
    names = tuple(dict.fromkeys(n for n in names if n))
    _REFERENCED[key] = (stamp, names)
    return names


def _obj_mtllibs(path: Path) -> list[str]:
    """The names on an OBJ's `mtllib` lines, read 1 MiB at a time (OBJs run to hundreds of MB).
    One line may list several names; trimesh instead takes the rest of its first "mtllib" (in a
    comment too) as one name, so both the whole rest and each word are listed."""
    names: list[str] = []
    tail = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            done = not chunk
            buf = tail + chunk
            del chunk  # at most two chunks held at once
            end = len(buf) if done else buf.rfind(b"\n") + 1  # whole lines now, the rest with the next
            if len(buf) - end > 1 << 20:  # a megabyte without a newline: keep only what a name could need
                end = len(buf) - 256
            if buf.find(b"mtllib", 0, end) >= 0:
                for m in _MTLLIB.finditer(buf, 0, end):
                    if m.start() and (buf[m.start() - 1:m.start()].isalnum() or buf[m.start() - 1] == 0x5F):
                        continue  # part of another word
                    rest = os.fsdecode(m.group(1)).strip()
                    names += [rest, *rest.split()]
            tail = buf[end:]
            del buf
            if done:
                return names


def _glb_json(path: Path) -> dict:
    """The JSON chunk of a GLB: a 12-byte header (magic, version, length), then the first chunk
    (length, type, data)."""
    with open(path, "rb") as f:
        head = f.read(20)
        if len(head) < 20:
            raise ValueError("short GLB")
        magic, _version, _length, size, kind = struct.unpack("<5I", head)
        if magic != _GLB_MAGIC or kind != _GLB_JSON or size > os.fstat(f.fileno()).st_size:
            raise ValueError("not a GLB JSON chunk")
        return json.loads(f.read(size))


def _buffer_uris(tree) -> list[str]:
    """A glTF's external buffer URIs: as written (trimesh reads that name) and URL-decoded (as the
    spec means it); embedded `data:` URIs are in the file itself."""
    buffers = tree.get("buffers") if isinstance(tree, dict) else None
    uris = [b.get("uri") for b in buffers if isinstance(b, dict)] if isinstance(buffers, list) else []
    out = []
    for uri in uris:
        if isinstance(uri, str) and uri and not uri[:5].lower() == "data:":
            out += [uri, unquote(uri)]
    return out


def load_object_mesh(spec: ObjectSpec) -> Mesh:
    """The mesh an ObjectSpec names, with the spec's material overriding the file's."""
    if spec.mesh.startswith("builtin:"):
        from dipir.scene.procedural import BUILTIN_ASSETS

        name = spec.mesh.split(":", 1)[1]
        if name not in BUILTIN_ASSETS:
            raise DipirError(f"unknown builtin asset {name!r} (have: {', '.join(sorted(BUILTIN_ASSETS))})",
                             field="object.mesh")
        mesh = BUILTIN_ASSETS[name]()
    else:
        mesh = load_mesh_file(spec.mesh)
    mesh.material = {**mesh.material, **spec.material}
    return mesh


# ---------------------------------------------------------------------------------------------
# Automatic placement


def place_in_front(camera, plane: Plane, mesh: str = "builtin:car", distance: float = 8.0, yaw_deg: float = 0.0,
                   scale: float = 1.0, cls: str | None = None, material: dict | None = None,
                   lateral: float = 0.0) -> ObjectSpec:
    """An ObjectSpec standing on the plane `distance` metres in front of the camera (measured along
    the plane from the camera's foot point), `lateral` metres to its right, turned by `yaw_deg`
    relative to facing the camera. Raises DipirError unless it is visible and on the plane, with its
    contact point and the shadow region around it in the frame (`check_placement`)."""
    cls = object_class(mesh, cls)
    n = np.asarray(plane.normal, dtype=np.float64)
    cam = np.asarray(camera.to_world, dtype=np.float64)
    origin, fwd, left = cam[:3, 3], cam[:3, 2], cam[:3, 0]
    foot = origin - ((origin - plane.point) @ n) * n
    f = fwd - (fwd @ n) * n
    if np.linalg.norm(f) < 1e-6:
        raise DipirError("camera looks straight along the plane normal: no forward direction", field="object")
    f /= np.linalg.norm(f)
    right = -(left - (left @ n) * n)
    right /= np.linalg.norm(right)
    pos = foot + distance * f + lateral * right
    # Yaw 0 turns the object's local +Z (its front) towards the camera.
    to_cam = -f
    base = rotation_between(np.array([0.0, 1, 0]), n)
    z_local = base.T @ to_cam
    yaw0 = np.degrees(np.arctan2(z_local[0], z_local[2]))
    spec = ObjectSpec(mesh=mesh, position=pos, yaw_deg=float(yaw0 + yaw_deg), scale=scale, cls=cls,
                      material=dict(material or {}))
    check_placement(spec, camera, plane, moved_by="object.distance")
    return spec


SHADOW_RADIUS_M = 1.0  # the ground around the contact point that must be in view: where contact shadows fall
MIN_SHADOW_VISIBLE = 0.9  # share of that disk that must project inside the frame


def shadow_disk(spec: ObjectSpec, plane: Plane, radius: float = SHADOW_RADIUS_M, n: int = 256) -> np.ndarray:
    """`n` points (n, 3) spread evenly (by area, a sunflower pattern) over the disk of `radius` metres
    on the plane around the object's contact point."""
    normal = np.asarray(plane.normal, dtype=np.float64)
    t1 = np.cross(normal, [1.0, 0, 0] if abs(normal[0]) < 0.9 else [0, 0, 1.0])
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(normal, t1)
    k = np.arange(n) + 0.5
    r, a = radius * np.sqrt(k / n), k * np.pi * (3 - np.sqrt(5))
    return np.asarray(spec.position, float) + (r * np.cos(a))[:, None] * t1 + (r * np.sin(a))[:, None] * t2


def check_placement(spec: ObjectSpec, camera, plane: Plane, mesh: Mesh | None = None, min_visible: float = 0.5,
                    shadow_radius: float = SHADOW_RADIUS_M, min_shadow_visible: float = MIN_SHADOW_VISIBLE,
                    moved_by: str = "object.position") -> None:
    """Raise DipirError unless the object stands on the plane, at least `min_visible` of its
    bounding-box corners project inside the image in front of the camera, its contact point (the
    base centre) does, and at least `min_shadow_visible` of a `shadow_radius` disk on the plane
    around that point does: the contact shadow, which DiPIR's shadow term and every composite metric
    judge, must be in the picture. `moved_by` names the field that places the object (errors say it)."""
    from dipir.scene.geometry import in_view, project

    check_on_plane(spec.position, plane)
    mesh = mesh or load_object_mesh(spec)
    lo, hi = mesh.bounds()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    m = object_to_world(spec, plane)
    world = corners @ m[:3, :3].T + m[:3, 3]
    frac = float(in_view(camera, world).mean())
    if frac < min_visible:
        raise DipirError(f"object is not visible from the camera ({frac:.0%} of its bounding box in view)",
                         field=moved_by)
    contact = np.asarray(spec.position, dtype=np.float64)[None]
    if not in_view(camera, contact)[0]:
        uv, z = project(camera, contact)
        where = f"pixel ({uv[0, 0]:.0f}, {uv[0, 1]:.0f}) of {camera.width}x{camera.height}" if z[0] > 0 else \
            "behind the camera"
        raise DipirError(f"the object's contact point with the ground is out of the frame ({where}), so no "
                         "contact shadow can be seen: move the object or pitch the camera down", field=moved_by)
    if shadow_radius > 0 and min_shadow_visible > 0:
        seen = float(in_view(camera, shadow_disk(spec, plane, shadow_radius)).mean())
        if seen < min_shadow_visible:
            raise DipirError(f"only {seen:.0%} of the {shadow_radius:g} m shadow disk around the object's contact "
                             f"point is in the frame (need {min_shadow_visible:.0%}): move the object or pitch the "
                             "camera down", field=moved_by)


def builtin_class(mesh: str) -> str | None:
    """A builtin asset's default class (its name: car, vase, bucket, box); None for mesh files."""
    return mesh.split(":", 1)[1] if mesh.startswith("builtin:") else None


def object_class(mesh: str, cls: str | None) -> str:
    """The class to use: the given one, else a builtin's name; a mesh file without one is an error."""
    cls = cls or builtin_class(mesh)
    if not cls:
        raise DipirError(f"missing: what {Path(mesh).name} is (e.g. car, vase); DiPIR's prompts read "
                         "'a photo of a {class}'", field="object.class")
    return str(cls)


# Keys of a loader's default object that only make sense for its own mesh.
_MESH_KEYS = ("mesh", "class", "scale", "material")


def merge_object(d: dict | None, default: dict) -> dict:
    """`d` over `default`; a `d` naming its own mesh keeps only the default's placement keys."""
    d = d or {}
    if d.get("mesh") is not None:
        default = {k: v for k, v in default.items() if k not in _MESH_KEYS}
    return {**default, **d}


def object_from_dict(d: dict | None, camera, plane: Plane, default: dict) -> ObjectSpec:
    """Build an ObjectSpec from a plain dict: an explicit `position` [x, y, z] (snapped onto the
    plane), or auto placement from `distance`, `lateral` and `yaw_deg`. Keys: mesh, class, scale,
    material, position | distance, lateral, yaw_deg. A dict that names its own mesh takes only the
    placement keys from `default` (never the default mesh's class, scale or material). `class`
    names the object in DiPIR's prompts: builtins default to their name, mesh files must give it."""
    cfg = merge_object(d, default)
    unknown = set(cfg) - {"mesh", "class", "scale", "material", "position", "distance", "lateral", "yaw_deg"}
    if unknown:
        raise DipirError(f"unknown object key(s) {sorted(unknown)}", field="object")
    mesh = str(cfg.get("mesh", "builtin:car"))
    if mesh.startswith("builtin:"):
        from dipir.scene.procedural import BUILTIN_ASSETS

        if mesh.split(":", 1)[1] not in BUILTIN_ASSETS:
            raise DipirError(f"unknown builtin asset {mesh!r}", field="object.mesh")
    else:
        mesh = str(Path(mesh).resolve())
    common = dict(mesh=mesh, scale=float(cfg.get("scale", 1.0)), cls=object_class(mesh, cfg.get("class")),
                  material=dict(cfg.get("material") or {}))
    if cfg.get("position") is not None:
        p = np.asarray(cfg["position"], dtype=np.float64)
        p = p - ((p - plane.point) @ plane.normal) * plane.normal
        spec = ObjectSpec(position=p, yaw_deg=float(cfg.get("yaw_deg", 0.0)), **common)
        check_placement(spec, camera, plane)
        return spec
    return place_in_front(camera, plane, distance=float(cfg.get("distance", 8.0)),
                          yaw_deg=float(cfg.get("yaw_deg", 0.0)), lateral=float(cfg.get("lateral", 0.0)), **common)


def footprint_counts(spec: ObjectSpec, plane: Plane, points: np.ndarray, margin: float = 0.3,
                     min_height: float = 0.2, mesh: Mesh | None = None) -> tuple[int, int]:
    """Scene points (N, 3) over the object's footprint (its box grown by `margin`): how many are more
    than `min_height` above the plane (obstacles it would intersect) and how many lie on the ground."""
    mesh = mesh or load_object_mesh(spec)
    lo, hi = mesh.bounds()
    m = object_to_world(spec, plane)
    local = (np.asarray(points, dtype=np.float64) - m[:3, 3]) @ m[:3, :3] / spec.scale ** 2
    lo, hi = lo - margin / spec.scale, hi + margin / spec.scale
    over = np.all((local[:, [0, 2]] >= lo[[0, 2]]) & (local[:, [0, 2]] <= hi[[0, 2]]), axis=1)
    height = local[:, 1] * spec.scale
    above = over & (height > min_height) & (local[:, 1] <= hi[1])
    ground = over & (np.abs(height) <= min_height)
    return int(above.sum()), int(ground.sum())


def points_inside(spec: ObjectSpec, plane: Plane, points: np.ndarray, margin: float = 0.3,
                  min_height: float = 0.2, mesh: Mesh | None = None) -> int:
    """How many scene points fall inside the object's box (grown by `margin`) more than `min_height`
    above the plane: obstacles the object would intersect."""
    return footprint_counts(spec, plane, points, margin, min_height, mesh)[0]
