"""The scene contract: one insertion problem, loaded from and saved to a documented YAML file.

World convention is Mitsuba's: +Y up. Paths inside a scene file are relative to the file.

```yaml
id: my_scene                      # optional; defaults to the folder name
background: background.png        # LDR sRGB image
camera:
  fov_y_deg: 60                   # or intrinsics: [fx, fy, cx, cy] (pixels of the background)
  origin: [0, 1.5, 0]             # with target and up (default [0, 1, 0]) ...
  target: [0, 1.5, 1]
  # to_world: [[...4x4...]]       # ... or a camera-to-world matrix (Mitsuba camera: looks along
  #                                 local +Z, +Y up, +X to the image's left)
plane:
  point: [0, 0, 0]
  normal: [0, 1, 0]
  size: 20                        # optional: edge length in metres (default 40)
object:
  mesh: car.obj                   # OBJ / PLY / glTF path, or builtin:car|vase|bucket
  position: [0, 0, 6]             # base of the object, on the plane
  yaw_deg: 30                     # about the plane normal
  scale: 1.0
  class: car                      # names it in prompts; builtins default to their name
  material:                       # optional principled BSDF parameters
    base_color: [0.5, 0.05, 0.05]
    roughness: 0.3
    metallic: 0.0
envmap: envmap.exr                # optional ground-truth lighting, already in this scene's world
points: points.ply                # optional LiDAR points in this scene's world
provenance: {dataset: polyhaven}  # free-form, copied into results
```
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dipir.errors import DipirError
from dipir.io import image_size, is_number, read_yaml
from dipir.scene.geometry import is_rigid

SCENE_FILE = "scene.yaml"
# Files a tool once wrote beside a scene that are not part of it: `dipir prior check` kept its
# composites in the scene folder until it moved them to the cache. A scene folder's content hash
# leaves them out, so a check run on a suite's scenes does not make every task of the suite stale.
NOT_SCENE_CONTENT = ("prior_check_*.npz",)
ON_PLANE_M = 1e-3  # how far off the plane an object's position may be


@dataclass
class Camera:
    to_world: np.ndarray  # 4x4 camera-to-world, Mitsuba camera convention
    width: int
    height: int
    fov_y_deg: float | None = None
    intrinsics: tuple[float, float, float, float] | None = None  # fx, fy, cx, cy in pixels

    def fy(self) -> float:
        if self.intrinsics is not None:
            return float(self.intrinsics[1])
        return 0.5 * self.height / np.tan(np.radians(self.fov_y_deg) / 2)

    def K(self) -> np.ndarray:
        """3x3 pinhole matrix (pixels; u right, v down)."""
        if self.intrinsics is not None:
            fx, fy, cx, cy = self.intrinsics
        else:
            fy = fx = self.fy()
            cx, cy = self.width / 2, self.height / 2
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera rendering at another resolution (intrinsics scale with it: the image is
        stretched, as a resized photo is). A field-of-view camera taken to another aspect becomes
        intrinsics, since its form can only say square pixels (it would crop where the photo stretches)."""
        sx, sy = width / self.width, height / self.height
        intr = self.intrinsics
        if intr is None and (width, height) != (self.width, self.height) and abs(sx - sy) > 1e-12:
            K = self.K()
            intr = (K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        if intr is not None:
            fx, fy, cx, cy = intr
            intr = (float(fx * sx), float(fy * sy), float(cx * sx), float(cy * sy))
        return dataclasses.replace(self, width=width, height=height, intrinsics=intr)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"to_world": self.to_world.tolist(), "width": self.width, "height": self.height}
        if self.intrinsics is not None:
            d["intrinsics"] = [float(x) for x in self.intrinsics]
        else:
            d["fov_y_deg"] = float(self.fov_y_deg)
        return d


@dataclass
class Plane:
    point: np.ndarray
    normal: np.ndarray  # unit
    size: float = 40.0

    def to_dict(self) -> dict:
        return {"point": self.point.tolist(), "normal": self.normal.tolist(), "size": float(self.size)}


@dataclass
class ObjectSpec:
    mesh: str  # absolute path, or "builtin:<name>"
    position: np.ndarray
    yaw_deg: float = 0.0
    scale: float = 1.0
    cls: str = "object"
    material: dict = field(default_factory=dict)

    def to_dict(self, base: Path | None = None) -> dict:
        mesh = self.mesh
        if base is not None and not mesh.startswith("builtin:"):
            mesh = _relative(Path(mesh), base)
        d = {"mesh": mesh, "position": self.position.tolist(), "yaw_deg": float(self.yaw_deg),
             "scale": float(self.scale), "class": self.cls}
        if self.material:
            d["material"] = self.material
        return d


@dataclass
class Scene:
    id: str
    background: Path
    camera: Camera
    plane: Plane
    object: ObjectSpec
    envmap: Path | None = None  # ground-truth env map in this scene's world, if known
    points: Path | None = None
    provenance: dict = field(default_factory=dict)
    source: Path | None = None  # the scene.yaml this came from

    @property
    def has_ground_truth(self) -> bool:
        return self.envmap is not None

    def to_dict(self, base: Path | None = None) -> dict:
        rel = (lambda p: _relative(Path(p), base)) if base is not None else str
        d: dict[str, Any] = {
            "id": self.id,
            "background": rel(self.background),
            "camera": self.camera.to_dict(),
            "plane": self.plane.to_dict(),
            "object": self.object.to_dict(base),
        }
        if self.envmap is not None:
            d["envmap"] = rel(self.envmap)
        if self.points is not None:
            d["points"] = rel(self.points)
        if self.provenance:
            d["provenance"] = self.provenance
        return d

    def save(self, path: str | Path) -> Path:
        """Write scene.yaml (paths relative to its folder). `path` is a file or a folder."""
        path = Path(path)
        if path.suffix not in (".yaml", ".yml"):
            path = path / SCENE_FILE
        from dipir.io import write_text_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, yaml.safe_dump(self.to_dict(path.parent), sort_keys=False))


def _relative(p: Path, base: Path) -> str:
    try:
        return str(p.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(p.resolve())


# ---------------------------------------------------------------------------------------------
# Loading and validation


def look_at(origin, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Mitsuba's look_at: camera-to-world whose local +Z looks at `target`, local +Y near `up`."""
    o, t, u = (np.asarray(v, dtype=np.float64) for v in (origin, target, up))
    d = t - o
    n = np.linalg.norm(d)
    if n == 0:
        raise ValueError("origin and target coincide")
    d = d / n
    left = np.cross(u, d)
    if np.linalg.norm(left) < 1e-9:
        raise ValueError("up is parallel to the viewing direction")
    left = left / np.linalg.norm(left)
    new_up = np.cross(d, left)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = left, new_up, d, o
    return m


class FieldReader:
    """Typed access to a YAML or JSON mapping that reports errors as `file: section.key: message`; the scene
    contract reads with it, and so does anything else that reads scene fields (the prior's sun labels)."""

    def __init__(self, data: Any, path: Path, prefix: str = ""):
        if not isinstance(data, dict):
            raise DipirError("expected a mapping", path, prefix or None)
        self.data, self.path, self.prefix = data, path, prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, msg: str):
        raise DipirError(msg, self.path, self._name(key))

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def section(self, key: str) -> "FieldReader":
        if not self.has(key):
            self.fail(key, "missing required section")
        return FieldReader(self.data[key], self.path, self._name(key))

    def number(self, key: str, default: float | None = None, positive: bool = False) -> float:
        if not self.has(key):
            if default is None:
                self.fail(key, "missing required number")
            return float(default)
        v = self.data[key]
        if not is_number(v, finite=True):  # a YAML int past float's range (1e400) is no number a scene holds
            self.fail(key, f"expected a finite number, got {repr(v)[:40]}")
        if positive and v <= 0:
            self.fail(key, f"must be > 0, got {v!r}")
        return float(v)

    def vector(self, key: str, n: int, default=None) -> np.ndarray:
        if not self.has(key):
            if default is None:
                self.fail(key, f"missing required list of {n} numbers")
            return np.asarray(default, dtype=np.float64)
        v = self.data[key]
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            self.fail(key, f"expected {n} numbers, got {v!r}")
        if a.shape != (n,) or not np.all(np.isfinite(a)):
            self.fail(key, f"expected {n} finite numbers, got {v!r}")
        return a

    def direction(self, key: str) -> np.ndarray:
        """A direction given as 3 numbers of any nonzero length (a plane's normal, a sun's direction): unit length."""
        v = self.vector(key, 3)
        n = np.linalg.norm(v)
        if n < 1e-9:
            self.fail(key, "must be non-zero")
        return v / n

    def rigid_transform(self, key: str) -> np.ndarray:
        """A 4×4 rigid transform (a camera's `to_world`: its rotation's columns are the camera's axes)."""
        if not self.has(key):
            self.fail(key, "missing required 4x4 matrix")
        try:
            m = np.asarray(self.data[key], dtype=np.float64)
        except (TypeError, ValueError):
            self.fail(key, "expected a 4x4 matrix")
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            self.fail(key, f"expected a finite 4x4 matrix, got shape {m.shape}")
        if not is_rigid(m, proper=False):
            self.fail(key, "expected a rigid transform (orthonormal rotation, no scale or shear; last row 0 0 0 1)")
        if not is_rigid(m):  # orthonormal but a reflection: the image would be mirrored
            self.fail(key, "expected a rotation, got a reflection (determinant -1): the camera's axes must be right-handed")
        return m

    def string(self, key: str, default: str | None = None) -> str:
        if not self.has(key):
            if default is None:
                self.fail(key, "missing required string")
            return default
        v = self.data[key]
        if not isinstance(v, str) or not v:
            self.fail(key, f"expected a non-empty string, got {v!r}")
        return v

    def file(self, key: str, required: bool = True) -> Path | None:
        if not self.has(key) and not required:
            return None
        p = Path(self.string(key))
        if not p.is_absolute():
            p = (self.path.parent / p).resolve()
        if not p.is_file():
            self.fail(key, f"file not found: {p}")
        return p

    def unknown_keys(self, allowed: set[str]) -> None:
        extra = sorted(set(self.data) - allowed, key=str)  # YAML keys may be numbers or booleans (yes:, 1:)
        if extra:
            self.fail(extra[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")


def check_on_plane(position, plane: Plane, path: Path | None = None) -> None:
    """The object's base stands on the plane (within ON_PLANE_M): off it, the object floats or sinks.
    A DipirError naming object.position (and `path`, the scene file, when given) otherwise; a loaded
    scene and every placement (`assets.check_placement`) are held to it."""
    off = float((np.asarray(position) - plane.point) @ plane.normal)
    if abs(off) > ON_PLANE_M:
        raise DipirError(f"object is {off:.3f} m off the plane", path, "object.position")


def _read_camera(r: FieldReader, image_size: tuple[int, int], background: Path) -> Camera:
    r.unknown_keys({"fov_y_deg", "intrinsics", "origin", "target", "up", "to_world", "width", "height"})
    width = int(r.number("width", image_size[0], positive=True))
    height = int(r.number("height", image_size[1], positive=True))
    for key, v in (("width", width), ("height", height)):
        if not 1 <= v <= 16384:
            r.fail(key, f"must be in [1, 16384] pixels, got {v}")
    # The camera is the background's (intrinsics are in its pixels): another aspect would stretch the
    # photo. A size scaled evenly is the same picture; a pixel of rounding on each side of the larger
    # of the two is allowed (a 4000x2667 camera over its 500x333 downscale: 333.4 rounded).
    bw, bh = image_size
    if abs(width * bh - height * bw) > max(width, bw) + max(height, bh):
        r.fail("width", f"camera.width x camera.height {width}x{height} is not the shape of the background "
                        f"{background.name} ({bw}x{bh}); give its size, or one scaled evenly")
    fov = intr = None
    if r.has("intrinsics"):
        intr = tuple(float(x) for x in r.vector("intrinsics", 4))
        if intr[0] <= 0 or intr[1] <= 0:
            r.fail("intrinsics", "focal lengths must be > 0")
    elif r.has("fov_y_deg"):
        fov = r.number("fov_y_deg")
        if not 0 < fov < 180:
            r.fail("fov_y_deg", f"must be in (0, 180), got {fov}")
    else:
        r.fail("fov_y_deg", "give fov_y_deg or intrinsics")
    if r.has("to_world"):
        m = r.rigid_transform("to_world")
    else:
        try:
            m = look_at(r.vector("origin", 3), r.vector("target", 3), r.vector("up", 3, default=(0, 1, 0)))
        except ValueError as err:
            r.fail("target", str(err))
    return Camera(to_world=m, width=width, height=height, fov_y_deg=fov, intrinsics=intr)


def _read_plane(r: FieldReader) -> Plane:
    r.unknown_keys({"point", "normal", "size"})
    n = r.direction("normal")
    return Plane(point=r.vector("point", 3), normal=n, size=r.number("size", 40.0, positive=True))


def _read_object(r: FieldReader) -> ObjectSpec:
    r.unknown_keys({"mesh", "position", "yaw_deg", "scale", "class", "material"})
    mesh = r.string("mesh")
    if not mesh.startswith("builtin:"):
        mesh = str(r.file("mesh"))
    material = r.data.get("material") or {}
    if not isinstance(material, dict):
        r.fail("material", "expected a mapping")
    # The class names the object in DiPIR's prompts: a builtin's default is its name; a file must say.
    if not r.has("class") and not mesh.startswith("builtin:"):
        r.fail("class", f"missing: what {Path(mesh).name} is (e.g. car, vase); prompts read 'a photo of a {{class}}'")
    cls = r.string("class", mesh.split(":", 1)[-1])
    return ObjectSpec(mesh=mesh, position=r.vector("position", 3), yaw_deg=r.number("yaw_deg", 0.0),
                      scale=r.number("scale", 1.0, positive=True), cls=cls,
                      material=dict(material))


def load_scene(path: str | Path) -> Scene:
    """Load a scene from a scene folder (holding scene.yaml) or a YAML file. Errors name the field."""
    path = Path(path)
    if path.is_dir():
        path = path / SCENE_FILE
    if not path.is_file():
        raise DipirError("scene file not found", path)
    data = read_yaml(path)
    r = FieldReader(data, path)
    r.unknown_keys({"id", "background", "camera", "plane", "object", "envmap", "points", "provenance"})
    bg = r.file("background")
    camera = _read_camera(r.section("camera"), image_size(bg, field="background"), bg)
    plane, obj = _read_plane(r.section("plane")), _read_object(r.section("object"))
    check_on_plane(obj.position, plane, path)
    provenance = r.data.get("provenance") or {}
    if not isinstance(provenance, dict):
        r.fail("provenance", "expected a mapping")
    return Scene(
        id=r.string("id", path.parent.name),
        background=bg,
        camera=camera,
        plane=plane,
        object=obj,
        envmap=r.file("envmap", required=False),
        points=r.file("points", required=False),
        provenance=dict(provenance),
        source=path,
    )


def scene_folder_hash(folder: str | Path, hashes=None) -> str:
    """The content hash of a scene folder (every file in it but `NOT_SCENE_CONTENT`, and the files
    its scene.yaml names outside it: a shared mesh or background, and what its mesh references
    outside it, such as an OBJ's .mtl): the one key for "the same scene" (a suite's scene keys, the
    prior check's composite cache). `hashes`: a `FileHashCache` (default: this process's)."""
    from dipir.hashing import hash_json, process_file_hashes

    folder = Path(folder)
    hashes = hashes or process_file_hashes()
    inside = hashes.tree(folder, skip=NOT_SCENE_CONTENT)
    outside = [[key, hashes.file(p)] for key, p in _files_named_outside(folder)]
    return hash_json([inside, outside]) if outside else inside  # a self-contained folder keeps its hash


def _files_named_outside(folder: Path) -> list[tuple[str, Path]]:
    """(field, path) of each file scene.yaml names outside its folder, and of each file its mesh (in
    the folder or not) references outside it (`object.mesh:<name>`; a missing one as its path, which
    hashes as its name); none when scene.yaml does not read (loading the scene reports that)."""
    import re

    from dipir.scene.assets import mesh_references  # assets imports this module

    try:
        text = (folder / SCENE_FILE).read_text()
        # A name outside the folder has a "/" (absolute, or "../"), and a mesh file may reference
        # files outside: other scene files need no parse (the mini world's name builtin meshes),
        # which is what planning 15 k mini-world scenes would otherwise spend most of a minute on.
        names_mesh = re.search(r"""\bmesh\s*:(?!\s*['"]?builtin:)""", text)
        data = yaml.safe_load(text) if "/" in text or names_mesh else None
    except (OSError, ValueError, yaml.YAMLError):
        return []
    if not isinstance(data, dict):
        return []
    obj = data.get("object") if isinstance(data.get("object"), dict) else {}
    named = {k: data.get(k) for k in ("background", "envmap", "points")} | {"object.mesh": obj.get("mesh")}
    root, out = Path(os.path.normpath(folder.absolute())), []
    for key, name in named.items():
        if not isinstance(name, str) or not name or name.startswith("builtin:"):
            continue
        # As written, links not followed: a symlink in the folder is hashed with it (by what it points at).
        p = Path(os.path.normpath(root / name))
        if not p.is_relative_to(root):
            out.append((key, p))
        if key == "object.mesh":  # its .mtl / .bin inside the folder are hashed with the folder
            out += [(f"{key}:{ref}", f) for ref, f in mesh_references(p)
                    if not f.is_relative_to(root) and (f.is_file() or not f.exists())]
    return out
