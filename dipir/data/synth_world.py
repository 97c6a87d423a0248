"""The mini world: small procedural outdoor scenes, path traced by Mitsuba, whose lighting is known.

Each scene: a ground plane with a procedural albedo texture, 1–4 built-in objects (car, vase, bucket,
box; `--objects`) with random pose, scale and colour standing on it, lit by a sky + sun env map (sun anywhere in
azimuth, 15–60° up; `dipir.data.synth_polyhaven.sky_hdri`), seen by a camera looking down at the
ground so the shadows are large in the frame. Object 0 is the *target* (the one DiPIR re-inserts).

A scene folder holds:
- `image.png`: the full scene (all objects), sRGB;
- `background.png`: the same render without the target object (what DiPIR inserts into);
- `scene.yaml`: the scene contract (`dipir.scene`): camera, plane, target object (class, material),
  `envmap`, background; provenance names the split, seed and the captions;
- `envmap.exr`: the ground-truth sky + sun (Mitsuba envmap convention, +Y up);
- `truth.json`: the sun direction (world, unit vector towards the sun), elevation/azimuth, every
  object, the captions of both images and the split.

The output folder's `world.json` holds the `WorldConfig` its scenes were written with: writing more
scenes into it with another config (size, spp, camera, …) is refused, so a folder never mixes worlds.

Seed split (fixed): scene seeds below `HELD_OUT_START` are training scenes, seeds from it on are
held out. Held-out scenes have 2–4 objects (training scenes 1–4; `--objects MIN-MAX` changes both,
held-out scenes keeping at least 2), so the background always holds another object whose shadow
shows where the sun is. `dipir synth world OUT --count N --seed S` writes scenes with seeds S … S+N−1.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HELD_OUT_START = 1_000_000  # scene seeds >= this are held out (never used for training)

CLASSES = ("car", "vase", "bucket", "box")
# Scale range per builtin asset so every class stands 0.5–1.4 m tall (car: a 1.1–1.6 m long toy car).
SCALES = {"car": (0.25, 0.36), "vase": (1.6, 3.0), "bucket": (2.0, 3.5), "box": (0.45, 0.9)}
# Ground albedo palettes (linear RGB): grass, asphalt, sand, dirt, concrete.
GROUNDS = ((0.10, 0.22, 0.06), (0.09, 0.09, 0.10), (0.45, 0.38, 0.25), (0.22, 0.15, 0.09), (0.35, 0.35, 0.33))
# Captions spell "five" and "six" from the prior tokenizer's letters (they are not in its word list).
NUMBER_WORDS = {1: "a", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
MAX_OBJECTS = max(NUMBER_WORDS)  # a caption can count them


@dataclass
class WorldConfig:
    width: int = 32
    height: int = 32
    spp: int = 64
    max_depth: int = 4
    envmap_width: int = 256
    envmap_height: int = 128
    sun_radiance: float = 3000.0  # sun : sky irradiance about 3 : 1, so shadows are dark
    exposure: float = 0.3  # the whole env map is scaled by this (lit ground near mid-grey in sRGB)
    sun_elevation_deg: tuple = (15.0, 60.0)
    camera_elevation_deg: tuple = (50.0, 70.0)  # camera looks down at this angle
    camera_distance: tuple = (3.6, 4.6)
    fov_y_deg: float = 45.0
    max_objects: int = 4
    plane_size: float = 30.0
    texture_size: int = 256
    # Objects per training scene: min_objects … max_objects; held-out scenes keep at least 2
    # (`sample_scene`). A world.json from before this field reads back with its default (`_same_world`).
    min_objects: int = 1

    def __post_init__(self):
        from dipir.errors import DipirError

        if not (isinstance(self.min_objects, int) and isinstance(self.max_objects, int)
                and 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS):
            raise DipirError(f"expected 1 <= min <= max <= {MAX_OBJECTS} objects, got {self.min_objects}-{self.max_objects}",
                             field="objects")


def split_of(seed: int) -> str:
    return "held_out" if seed >= HELD_OUT_START else "train"


def caption(classes: list[str]) -> str:
    """'a scene with a car and two boxes' (classes in first-seen order)."""
    counts: dict[str, int] = {}
    for c in classes:
        counts[c] = counts.get(c, 0) + 1
    parts = [f"{NUMBER_WORDS[n]} {c}" if n == 1 else f"{NUMBER_WORDS[n]} {c}es" if c.endswith("x")
             else f"{NUMBER_WORDS[n]} {c}s" for c, n in counts.items()]
    if not parts:
        return "a scene"
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"a scene with {body}"


def ground_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Procedural albedo (size, size, 3), linear: a palette colour modulated by smooth noise, with
    tiles or stripes on some grounds."""
    base = np.array(GROUNDS[int(rng.integers(len(GROUNDS)))]) * rng.uniform(0.8, 1.25)
    noise = np.zeros((size, size))
    for octave in (4, 8, 16, 32):
        g = rng.normal(size=(octave + 1, octave + 1))
        idx = np.linspace(0, octave, size)
        i0 = np.floor(idx).astype(int).clip(0, octave - 1)
        f = idx - i0
        rows = g[i0] * (1 - f)[:, None] + g[i0 + 1] * f[:, None]
        noise += (rows[:, i0] * (1 - f) + rows[:, i0 + 1] * f) / octave**0.5
    tex = base * (1 + 0.25 * noise / max(np.abs(noise).max(), 1e-6))[..., None]
    kind = rng.integers(3)
    if kind == 1:  # paving tiles: dark grout lines
        period = int(rng.integers(12, 24))
        u = np.arange(size) % period == 0
        tex[u] *= 0.6
        tex[:, u] *= 0.6
    elif kind == 2:  # stripes (road markings / furrows)
        period = int(rng.integers(16, 40))
        tex[(np.arange(size) // (period // 2)) % 2 == 0] *= rng.uniform(0.7, 1.4)
    return np.clip(tex, 0.02, 0.9).astype(np.float32)


def sample_scene(seed: int, cfg: WorldConfig) -> dict:
    """Everything random about one scene, drawn from `seed` (no rendering)."""
    from dipir.data.synth_polyhaven import direction
    from dipir.scene.contract import look_at

    rng = np.random.default_rng(seed)
    sun_el = float(rng.uniform(*cfg.sun_elevation_deg))
    sun_az = float(rng.uniform(0, 360))
    cam_el = np.radians(rng.uniform(*cfg.camera_elevation_deg))
    cam_az = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(*cfg.camera_distance)
    origin = dist * np.array([np.cos(cam_el) * np.sin(cam_az), np.sin(cam_el), np.cos(cam_el) * np.cos(cam_az)])
    look = np.array([rng.uniform(-0.3, 0.3), 0.0, rng.uniform(-0.3, 0.3)])
    # Held-out scenes keep at least one other object: its shadow in the background is what shows
    # the sun's direction (with the target alone, any sun azimuth would be as plausible).
    least = cfg.min_objects if split_of(seed) == "train" else max(2, cfg.min_objects)
    n_obj = int(rng.integers(least, max(least, cfg.max_objects) + 1))
    objects: list[dict] = []
    # Ground-plane axes as seen by the camera: forward (away from the camera) and right.
    fwd = -np.array([np.sin(cam_az), 0, np.cos(cam_az)])
    right = np.cross(fwd, [0, 1, 0])
    tries = 0
    # 50 draws for the scene's count; more (up to 2000) only while it holds fewer than the minimum, so the
    # scenes that 50 draws filled, every default-world scene among them, stay as they were drawn.
    while len(objects) < n_obj and (tries < 50 or (len(objects) < least and tries < 2000)):
        tries += 1
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        scale = float(rng.uniform(*SCALES[cls]))
        radius = 0.7 if cls in ("car", "box") else 0.35
        if not objects:  # the target, near the centre of the view
            a, b = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
        else:
            a, b = rng.uniform(-1.2, 1.2), rng.uniform(-1.0, 1.3)
        pos = look + a * right + b * fwd
        if any(np.linalg.norm(pos - np.asarray(o["position"])) < radius + o["radius"] for o in objects):
            continue
        hue = rng.uniform(0, 1, size=3)
        color = (0.08 + 0.8 * hue / max(hue.max(), 1e-6) * rng.uniform(0.4, 1.0)).clip(0.03, 0.92)
        metallic = 1.0 if cls == "bucket" and rng.uniform() < 0.5 else 0.0
        objects.append({"class": cls, "mesh": f"builtin:{cls}", "position": [float(x) for x in pos],
                        "yaw_deg": float(rng.uniform(0, 360)), "scale": scale, "radius": radius,
                        "material": {"base_color": [float(x) for x in color],
                                     "roughness": float(rng.uniform(0.2, 0.8)), "metallic": metallic}})
    return {
        "seed": int(seed), "split": split_of(seed),
        "sun_elevation_deg": sun_el, "sun_azimuth_deg": sun_az,
        "sun_direction": direction(sun_el, sun_az).tolist(),
        "camera": {"to_world": look_at(origin, look).tolist(), "fov_y_deg": cfg.fov_y_deg},
        "objects": objects, "ground_seed": int(rng.integers(2**31)),
    }


class WorldRenderer:
    """Path traces mini-world scenes with Mitsuba (`path` integrator, hidden nothing: the sky is not
    seen since the camera looks down)."""

    def __init__(self, cfg: WorldConfig):
        from dipir.rendering.mitsuba_setup import load_mitsuba

        self.cfg = cfg
        self.mi = load_mitsuba()

    def _mesh(self, name: str, obj: dict):
        from dipir.rendering.renderer import _bsdf_dict
        from dipir.scene.assets import load_object_mesh, object_to_world
        from dipir.scene.contract import ObjectSpec, Plane

        mi = self.mi
        spec = ObjectSpec(mesh=obj["mesh"], position=np.asarray(obj["position"]), yaw_deg=obj["yaw_deg"],
                          scale=obj["scale"], cls=obj["class"], material=obj["material"])
        m = load_object_mesh(spec)
        tw = object_to_world(spec, Plane(point=np.zeros(3), normal=np.array([0.0, 1, 0])))
        v = np.asarray(m.vertices, dtype=np.float64) @ tw[:3, :3].T + tw[:3, 3]
        props = mi.Properties()
        props["bsdf"] = mi.load_dict(_bsdf_dict(m.material))
        has_n = m.normals is not None
        mesh = mi.Mesh(name, len(v), len(m.faces), props, has_vertex_normals=has_n)
        p = mi.traverse(mesh)
        p["vertex_positions"] = mi.Float(v.astype(np.float32).ravel())
        p["faces"] = mi.UInt32(np.asarray(m.faces, dtype=np.uint32).ravel())
        if has_n:
            nrm = np.asarray(m.normals, dtype=np.float64) @ np.linalg.inv(tw[:3, :3])
            nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
            p["vertex_normals"] = mi.Float(nrm.astype(np.float32).ravel())
        p.update()
        return mesh

    def render(self, sc: dict, envmap: np.ndarray, with_target: bool, seed: int = 0) -> np.ndarray:
        """Linear RGB (h, w, 3)."""
        from dipir.rendering.renderer import _sensor_dict
        from dipir.scene.contract import Camera

        mi, cfg = self.mi, self.cfg
        cam = Camera(to_world=np.asarray(sc["camera"]["to_world"]), width=cfg.width, height=cfg.height,
                     fov_y_deg=sc["camera"]["fov_y_deg"])
        tex = ground_texture(np.random.default_rng(sc["ground_seed"]), cfg.texture_size)
        half = cfg.plane_size / 2
        # Rectangle: local xy plane, normal +z -> rotate to +Y up.
        ground = mi.ScalarTransform4f([[half, 0, 0, 0], [0, 0, half, 0], [0, -half, 0, 0], [0, 0, 0, 1]])
        d = {
            "type": "scene",
            "integrator": {"type": "path", "max_depth": cfg.max_depth + 1},
            "sensor": _sensor_dict(mi, cam, cfg.spp),
            "env": {"type": "envmap", "bitmap": mi.Bitmap(envmap.astype(np.float32))},
            "ground": {"type": "rectangle", "to_world": ground,
                       "bsdf": {"type": "diffuse", "reflectance": {"type": "bitmap", "bitmap": mi.Bitmap(tex),
                                                                   "raw": True, "filter_type": "bilinear"}}},
        }
        for i, obj in enumerate(sc["objects"]):
            if i == 0 and not with_target:
                continue
            d[f"obj{i}"] = self._mesh(f"obj{i}", obj)
        scene = mi.load_dict(d)
        return np.asarray(mi.render(scene, seed=seed), dtype=np.float32)[..., :3]


def _save_png(path: Path, lin: np.ndarray) -> None:
    from PIL import Image

    from dipir.rendering.composite import linear_to_srgb

    Image.fromarray((linear_to_srgb(lin) * 255 + 0.5).astype(np.uint8)).save(path)


def write_scene(out: Path, seed: int, cfg: WorldConfig, renderer: WorldRenderer) -> Path:
    from dipir.data.synth_polyhaven import SynthHDRIConfig, sky_hdri
    from dipir.rendering.hdr import write_hdr
    from dipir.scene.contract import Camera, ObjectSpec, Plane, Scene

    sc = sample_scene(seed, cfg)
    folder = out / f"world_{seed:07d}"
    folder.mkdir(parents=True, exist_ok=True)
    env = sky_hdri(SynthHDRIConfig(width=cfg.envmap_width, height=cfg.envmap_height, sun_radius_deg=1.5,
                                   sun_radiance=cfg.sun_radiance), np.asarray(sc["sun_direction"])) * cfg.exposure
    write_hdr(folder / "envmap.exr", env)
    _save_png(folder / "image.png", renderer.render(sc, env, with_target=True, seed=seed % 2**31))
    _save_png(folder / "background.png", renderer.render(sc, env, with_target=False, seed=(seed + 7) % 2**31))
    classes = [o["class"] for o in sc["objects"]]
    sc["caption"] = caption(classes)
    sc["background_caption"] = caption(classes[1:]) if len(classes) > 1 else "a scene"
    sc["image_size"] = [cfg.width, cfg.height]
    t = sc["objects"][0]
    scene = Scene(
        id=folder.name, background=folder / "background.png",
        camera=Camera(to_world=np.asarray(sc["camera"]["to_world"]), width=cfg.width, height=cfg.height,
                      fov_y_deg=cfg.fov_y_deg),
        plane=Plane(point=np.zeros(3), normal=np.array([0.0, 1, 0]), size=cfg.plane_size),
        object=ObjectSpec(mesh=t["mesh"], position=np.asarray(t["position"]), yaw_deg=t["yaw_deg"],
                          scale=t["scale"], cls=t["class"], material=t["material"]),
        envmap=folder / "envmap.exr",
        provenance={"dataset": "mini-world", "seed": int(seed), "split": sc["split"], "caption": sc["caption"],
                    "background_caption": sc["background_caption"]})
    scene.save(folder)
    (folder / "truth.json").write_text(json.dumps(sc, indent=1))
    return folder


WORLD_FILE = "world.json"


def read_truth(folder: Path, *keys: str) -> dict:
    """A scene folder's truth.json, with `keys` required (a one-line error naming the file and field)."""
    from dipir.errors import DipirError
    from dipir.io import read_json_object

    path = Path(folder) / "truth.json"
    truth = read_json_object(path)
    for k in keys:
        if k not in truth:
            raise DipirError("missing (not a scene written by `dipir synth world`?)", path, k)
        kind, what = _TRUTH_TYPES.get(k, (object, ""))
        if not isinstance(truth[k], kind) or (kind is int and isinstance(truth[k], bool)):
            raise DipirError(f"expected {what}, got {truth[k]!r}", path, k)
    return truth


# The types of the truth.json fields readers require (the writer is `write_scene` above).
_TRUTH_TYPES = {"split": (str, "a string"), "seed": (int, "an integer"), "caption": (str, "a string"),
                "background_caption": (str, "a string"), "image_size": (list, "[width, height]"),
                "sun_elevation_deg": ((int, float), "a number")}


def read_world(out: str | Path) -> dict | None:
    """The config a folder's scenes were written with (`OUT/world.json`), or None for a folder from
    before that file. A field added after a folder was written is absent from its world.json: its
    scenes were written with that field's default."""
    from dipir.io import as_read_back, read_json_object, with_defaults

    path = Path(out) / WORLD_FILE
    return as_read_back(with_defaults(WorldConfig, read_json_object(path))) if path.is_file() else None


def _same_world(out: Path, cfg: WorldConfig) -> None:
    """Refuse to add scenes to a folder written with another config (`OUT/world.json`; a folder from
    before that file is compared by the image size its scenes record), then record this one."""
    from dipir.errors import DipirError
    from dipir.io import as_read_back

    want = as_read_back(dataclasses.asdict(cfg))
    path = out / WORLD_FILE
    have = read_world(out)
    if have is not None:
        for k, v in want.items():
            if have.get(k) != v:
                raise DipirError(f"these scenes were written with {k}={have.get(k)!r}, not {v!r}; write to "
                                 "another folder", path, k)
        return
    for truth in sorted(out.glob("*/truth.json"))[:1]:
        size = read_truth(truth.parent).get("image_size")
        if size is not None and size != [cfg.width, cfg.height]:
            what = f"{size[0]}x{size[1]}" if isinstance(size, list) and len(size) == 2 else f"of image_size {size!r}"
            raise DipirError(f"these scenes are {what}, not {cfg.width}x{cfg.height}; write to another folder",
                             truth, "image_size")
    path.write_text(json.dumps(want, indent=1))


def write_world(out: str | Path, count: int, seed: int = 0, cfg: WorldConfig | None = None,
                progress: bool = False) -> list[Path]:
    """Write scenes with seeds seed … seed+count−1 (existing complete folders are kept; they were
    written with the same config, `_same_world`)."""
    cfg = cfg or WorldConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _same_world(out, cfg)
    renderer = WorldRenderer(cfg)
    paths = []
    t0 = time.time()
    for i in range(count):
        s = seed + i
        folder = out / f"world_{s:07d}"
        if (folder / "truth.json").is_file():
            paths.append(folder)
            continue
        paths.append(write_scene(out, s, cfg, renderer))
        if progress and ((i + 1) % 50 == 0 or i + 1 == count):
            print(f"{i + 1}/{count} scenes, {(i + 1) / (time.time() - t0):.2f} scenes/s", file=sys.stderr, flush=True)
    return paths
